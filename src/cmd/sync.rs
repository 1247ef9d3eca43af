//! `r2-sync sync`.

use std::process::ExitCode;
use std::sync::Arc;

use slog::Logger;

use crate::config::Config;
use crate::sync::Syncer;

/// `r2-sync sync`: the scheduler alone, or one pass with `--once`.
pub(super) async fn sync(cfg: Config, log: Logger, once: bool) -> ExitCode {
    let (parts, shutdown) = match super::start(cfg, &log).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let syncer = Syncer::new(Arc::clone(&parts));
    let grace = parts.cfg.server.shutdown_grace;
    if !once {
        let _ = super::within_grace(
            crate::sync::schedule::run(syncer, shutdown.clone()),
            &shutdown,
            grace,
            &log,
        )
        .await;
        return ExitCode::SUCCESS;
    }
    let one_pass = async {
        syncer.reconcile().await;
        syncer.pass(&shutdown).await
    };
    match super::within_grace(one_pass, &shutdown, grace, &log).await {
        Some(report) if report.all_succeeded() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
