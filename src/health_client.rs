//! A small HTTP/1.0 client of the running process's health port, for the commands that ask
//! it (`healthcheck`, `status`, `shadow-report`, `adopt` while `run` holds the ledger). Raw
//! requests to 127.0.0.1 keep an HTTP client library out of the binary.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

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
    let mut headers = vec![(crate::server::CSRF_HEADER, csrf)];
    if let Some(token) = &cfg.server.admin_token {
        headers.push(("authorization", format!("Bearer {}", token.expose())));
    }
    Ok(headers)
}

/// `GET http://127.0.0.1:<port><path>` within 3 s: status code and body. A raw HTTP/1.1
/// request (`Connection: close`, the server sends a Content-Length for these routes) keeps an
/// HTTP client out of the binary.
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
    fn status_lines_parse() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
