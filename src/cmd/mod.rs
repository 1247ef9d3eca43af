//! What each subcommand does, one file per command, wired from the [`Context`].

mod check;
mod cutover;
mod healthcheck;
mod run;
mod serve;
mod status;
mod sync;
mod token;

use std::process::ExitCode;
use std::sync::Arc;

use slog::Logger;

use crate::cli::Command;
use crate::config::Config;
use crate::context::Context;

pub use healthcheck::healthcheck;
pub use token::download_link;

/// Runs one subcommand to its end; its exit code.
pub async fn run(command: Command, cfg: Config, log: Logger) -> ExitCode {
    match command {
        Command::Check => check::check(&cfg).await,
        Command::Status { json, filters } => status::status(&cfg, json, &filters).await,
        Command::ShadowReport { json } => cutover::shadow_report(&cfg, json).await,
        Command::Adopt { max_rate, json } => cutover::adopt(&cfg, max_rate, json).await,
        Command::Sync { once } => sync::sync(cfg, log, once).await,
        Command::Serve => serve::serve(cfg, log).await,
        Command::Token {
            media_id,
            user_id,
            ttl,
            base_url,
        } => token::token(&cfg, media_id, user_id, ttl, &base_url).await,
        // main answers it before reading the full configuration.
        Command::Healthcheck => healthcheck::healthcheck(cfg.server.health_port).await,
        Command::Run => run::run(cfg, log).await,
    }
}

/// Runs `work` to its end, unless a shutdown was requested and `grace` has passed since: then
/// gives up on it. Safe because every stage is in the ledger before the next begins, so work
/// cut short resumes on the next start exactly as after a crash.
pub(crate) async fn within_grace<F: std::future::Future>(
    work: F,
    shutdown: &crate::shutdown::CancellationToken,
    grace: std::time::Duration,
    log: &Logger,
) -> Option<F::Output> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        out = work => Some(out),
        () = deadline => {
            slog::warn!(log, "shutdown grace period over; exiting with work in flight (resumed on next start)";
                "grace_s" => grace.as_secs());
            None
        }
    }
}

/// Opens the parts, prepares the lease table and installs the signal handlers.
pub(crate) async fn start(
    cfg: Config,
    log: &Logger,
) -> Result<(Arc<Context>, crate::shutdown::CancellationToken), ExitCode> {
    let parts = Context::open(cfg, log.clone()).map_err(|e| {
        slog::error!(log, "cannot start"; "error" => e);
        ExitCode::FAILURE
    })?;
    // A dry run changes nothing anywhere, not even r2-sync's own table.
    if !parts.cfg.sync.dry_run {
        if let Err(e) = parts.db.ensure_lease_table().await {
            slog::warn!(log, "cannot prepare the lease table (will retry on each pass)"; "error" => %e);
        }
    }
    let shutdown = crate::shutdown::CancellationToken::new();
    crate::shutdown::on_signals(shutdown.clone(), log.clone()).map_err(|e| {
        slog::error!(log, "cannot install signal handlers"; "error" => %e);
        ExitCode::FAILURE
    })?;
    Ok((Arc::new(parts), shutdown))
}
