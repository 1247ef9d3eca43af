//! The server's subcommands: `serve`, `token` and `healthcheck`.

use std::process::ExitCode;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use slog::Logger;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::auth::{self, Grant};
use super::serve as start;
use crate::app::LEDGER_FILE;
use crate::config::Config;
use crate::db::{names, Db};
use crate::state::{Ledger, LedgerError};

/// Everything but RFC 3986 unreserved characters is percent-encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `r2-sync serve`: the file server alone, until SIGTERM/SIGINT and the drain after it.
pub async fn serve(cfg: Config, log: Logger) -> ExitCode {
    let parts = match crate::app::Parts::open(cfg) {
        Ok(parts) => parts,
        Err(e) => return fail(&log, &e),
    };
    let shutdown = CancellationToken::new();
    if let Err(e) = crate::shutdown::on_signals(shutdown.clone(), log.clone()) {
        return fail(&log, &format!("cannot install signal handlers: {e}"));
    }
    match start(parts.server_context(&log), shutdown).await {
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

/// `r2-sync token`: prints `<base-url>/<encoded archive path>?token=<jwt>`.
pub async fn token(cfg: &Config, media_id: u64, user_id: u64, ttl: Duration, base_url: &str) -> ExitCode {
    let path = match archived_path(cfg, media_id).await {
        Ok(Some(path)) => path,
        Ok(None) => {
            eprintln!("r2-sync: media {media_id} is not archived (no archived file in the ledger or PostgreSQL)");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("r2-sync: cannot look up media {media_id}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match auth::sign(&cfg.server, Grant { media_id, user_id }, ttl) {
        Ok(token) => {
            println!("{}", download_link(base_url, &path, &token));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("r2-sync: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The archive path of an archived media: the ledger's answer, else PostgreSQL's. A running
/// `serve`/`run` holds the ledger, so "in use" simply means asking PostgreSQL.
async fn archived_path(cfg: &Config, media_id: u64) -> Result<Option<String>, String> {
    match Ledger::open(&cfg.state_dir.join(LEDGER_FILE)) {
        Ok(ledger) => {
            let entry = ledger.get(media_id).map_err(|e| e.to_string())?;
            if let Some(path) = entry
                .filter(|e| e.stage().has_archived_file())
                .and_then(|e| e.archive_path)
            {
                return Ok(Some(path));
            }
        }
        Err(LedgerError::InUse { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let id = i64::try_from(media_id).map_err(|_| "media id out of range".to_owned())?;
    let db = Db::new(&cfg.db, "r2-sync-token").map_err(|e| e.to_string())?;
    let row = tokio::time::timeout(crate::check::CHECK_TIMEOUT, db.row(id))
        .await
        .map_err(|_| "PostgreSQL did not answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(row
        .filter(|r| r.status == names::STATUS_ARCHIVED && r.deleted_at.is_none())
        .and_then(|r| r.archive_path))
}

/// The link the backend would hand out for `archive_path`.
pub fn download_link(base_url: &str, archive_path: &str, token: &str) -> String {
    let path: Vec<String> = archive_path
        .split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect();
    format!("{}/{}?token={token}", base_url.trim_end_matches('/'), path.join("/"))
}

/// `r2-sync healthcheck`: 0 when `GET http://127.0.0.1:HEALTH_PORT/health` answers 200
/// within 3 s.
pub async fn healthcheck(port: u16) -> ExitCode {
    match local_get(port, "/health").await {
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

/// `GET http://127.0.0.1:<port><path>` within 3 s: status code and body. A raw HTTP/1.1
/// request (`Connection: close`, the server sends a Content-Length for these routes) keeps an
/// HTTP client out of the binary.
/// The headers a POST to the health port needs (see `dashboard::actions`): the running
/// process's CSRF token, read from `GET /api/session`, and the admin token when configured.
pub async fn action_headers(cfg: &Config) -> std::io::Result<Vec<(&'static str, String)>> {
    let (code, body) = local_get(cfg.server.health_port, "/api/session").await?;
    let session: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/api/session answered {code}: {e}"),
        )
    })?;
    let csrf = session["csrf"].as_str().unwrap_or_default().to_owned();
    let mut headers = vec![(super::dashboard::actions::CSRF_HEADER, csrf)];
    if let Some(token) = &cfg.server.admin_token {
        headers.push(("authorization", format!("Bearer {}", token.expose())));
    }
    Ok(headers)
}

pub async fn local_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    // HTTP/1.0: the answer ends with the connection, never chunked (`/status` streams).
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let answer = tokio::time::timeout(Duration::from_secs(3), async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(64 << 20).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 3 s"))??;
    let code =
        status_of(&answer).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))?;
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(Vec::new(), |i| answer[i + 4..].to_vec());
    Ok((code, body))
}

/// Sends `method path` to the local health port and calls `on_line` with each line of the
/// answer's body as it arrives: for answers that take as long as their work (no time limit
/// once connected). An answer other than 200 is an error carrying its body.
pub async fn local_stream(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    mut on_line: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let mut stream = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection within 3 s"))??;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{extra}Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        if reader.read_until(b'\n', &mut head).await? == 0 || head[before..].trim_ascii().is_empty() {
            break;
        }
    }
    let code =
        status_of(&head).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))?;
    let mut line = Vec::new();
    let mut body = Vec::new();
    while reader.read_until(b'\n', &mut line).await? > 0 {
        let trimmed = line.trim_ascii();
        if code == 200 && !trimmed.is_empty() {
            on_line(trimmed);
        } else if code != 200 {
            body.extend_from_slice(&line);
        }
        line.clear();
    }
    if code != 200 {
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        return Err(std::io::Error::other(format!("answered {code}: {body}")));
    }
    Ok(())
}

/// The status code of a raw HTTP/1.x response.
fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let mut words = std::str::from_utf8(line).ok()?.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_each_segment() {
        assert_eq!(
            download_link("https://files.example.com/", "2026/03/42-über clip?#.mp4", "a.b.c"),
            "https://files.example.com/2026/03/42-%C3%BCber%20clip%3F%23.mp4?token=a.b.c"
        );
        let decoded = super::super::request_path::decode("/2026/03/42-%C3%BCber%20clip%3F%23.mp4");
        assert_eq!(decoded.as_deref(), Some("2026/03/42-über clip?#.mp4"), "round trip");
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
