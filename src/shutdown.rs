//! Graceful shutdown: one cancellation token, cancelled on SIGTERM or SIGINT, handed to
//! every task.

use tokio::signal::unix::{signal, SignalKind};
pub use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn on_signals(token: CancellationToken, log: slog::Logger) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        slog::info!(log, "shutdown requested"; "signal" => name);
        token.cancel();
    });
    Ok(())
}
