//! `r2-sync run`.

use std::process::ExitCode;
use std::sync::Arc;

use slog::Logger;

use crate::config::Config;
use crate::server::Limits;
use crate::sync::Syncer;

/// `r2-sync run`: the scheduler and the file server in one process, sharing the ledger.
pub(super) async fn run(cfg: Config, log: Logger) -> ExitCode {
    let (parts, shutdown) = match super::start(cfg, &log).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let running = match crate::server::serve(Arc::clone(&parts), Limits::default(), shutdown.clone()).await {
        Ok(running) => running,
        Err(e) => {
            slog::error!(log, "file server cannot start"; "error" => %e);
            return ExitCode::FAILURE;
        }
    };
    let scheduler = tokio::spawn(crate::sync::schedule::run(
        Syncer::new(Arc::clone(&parts)),
        shutdown.clone(),
    ));
    running.finished().await;
    // The server only finishes after shutdown was requested; the scheduler checkpoints and
    // stops at the same signal.
    shutdown.cancel();
    let grace = parts.cfg.server.shutdown_grace;
    let _ = super::within_grace(scheduler, &shutdown, grace, &log).await;
    slog::info!(log, "stopped");
    ExitCode::SUCCESS
}
