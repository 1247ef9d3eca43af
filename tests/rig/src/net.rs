//! Loopback helpers: a free TCP port, and a plain HTTP/1.0 GET (no client library: the rig's
//! servers speak plain HTTP on 127.0.0.1).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Why a GET gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("not a plain http://host:port/path URL: {0}")]
    Url(String),
    #[error("GET {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("GET {url}: no HTTP status line in the answer")]
    Answer { url: String },
}

/// A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An answer: the status code and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET url` with `headers` (name, value) over a new connection, HTTP/1.0 so the server
/// closes it after the answer; at most `timeout` per read or write.
pub fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Answer, NetError> {
    let (host, path) = split_url(url)?;
    let io = |source| NetError::Io {
        url: url.to_owned(),
        source,
    };
    let mut stream = TcpStream::connect(host).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    parse_answer(&raw).ok_or_else(|| NetError::Answer { url: url.to_owned() })
}

/// `http://host:port/path` as (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), NetError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| NetError::Url(url.to_owned()))?;
    Ok(match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    })
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        body: raw[end + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:9/_stats").unwrap(),
            ("127.0.0.1:9", "/_stats")
        );
        assert_eq!(split_url("http://127.0.0.1:9").unwrap(), ("127.0.0.1:9", "/"));
        assert!(split_url("https://x/").is_err());
    }

    #[test]
    fn answers_parse_into_status_and_body() {
        let a = parse_answer(b"HTTP/1.1 206 Partial Content\r\nA: b\r\n\r\nxy").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (206, &b"xy"[..]));
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
