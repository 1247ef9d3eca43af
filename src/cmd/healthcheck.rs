//! `r2-sync healthcheck`: the image's HEALTHCHECK.

use std::process::ExitCode;

/// `r2-sync healthcheck`: 0 when `GET http://127.0.0.1:HEALTH_PORT/health` answers 200
/// within 3 s.
pub async fn healthcheck(port: u16) -> ExitCode {
    match crate::health_client::local_get(port, "/health").await {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok((code, _)) => {
            eprintln!("r2-sync: /health answered {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("r2-sync: /health on port {port}: {e}");
            ExitCode::FAILURE
        }
    }
}
