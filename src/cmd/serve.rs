//! `r2-sync serve`.

use std::process::ExitCode;
use std::sync::Arc;

use slog::Logger;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::server::Limits;

/// `r2-sync serve`: the file server alone, until SIGTERM/SIGINT and the drain after it.
pub(super) async fn serve(cfg: Config, log: Logger) -> ExitCode {
    let parts = match crate::context::Context::open(cfg, log.clone()) {
        Ok(parts) => parts,
        Err(e) => return fail(&log, &e),
    };
    let shutdown = CancellationToken::new();
    if let Err(e) = crate::shutdown::on_signals(shutdown.clone(), log.clone()) {
        return fail(&log, &format!("cannot install signal handlers: {e}"));
    }
    match crate::server::serve(Arc::new(parts), Limits::default(), shutdown).await {
        Ok(running) => {
            running.finished().await;
            ExitCode::SUCCESS
        }
        Err(e) => fail(&log, &e.to_string()),
    }
}

fn fail(log: &Logger, error: &str) -> ExitCode {
    slog::error!(log, "file server cannot start"; "error" => error);
    ExitCode::FAILURE
}
