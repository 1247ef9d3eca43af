//! The file server as an operator sees it: health endpoints (with PostgreSQL down too),
//! graceful shutdown, and the protocol limits (header size, slowloris, idle, connection cap).

use crate::common;
use crate::server_support;

use std::time::{Duration, Instant};

use common::Rig;
use r2_sync::server::Limits;
use serde_json::Value;
use server_support::{raw, raw_get, Served};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIG: &str = "2026/03/1-big.bin";

async fn json(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap())
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn dead_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port().to_string()
}

#[tokio::test]
async fn health_answers_on_both_ports_and_deep_checks_everything() {
    let served = Served::new().await;
    assert_ne!(served.files, served.health);
    for addr in [served.files, served.health] {
        let (code, body) = json(&format!("http://{addr}/health")).await;
        assert_eq!((code, body), (200, serde_json::json!({"status": "ok"})));
    }
    let (code, body) = json(&format!("http://{}/health/deep", served.health)).await;
    assert_eq!(code, 200, "{body}");
    for check in ["postgres", "bucket", "archive", "ledger"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
        assert!(body["checks"][check]["latency_ms"].is_u64());
    }
    let (code, _) = raw_get(served.health, "/2026/03/1-x.mp4?token=x").await;
    assert_eq!(code, 404, "the health port serves no files");
    let post = reqwest::Client::new()
        .post(format!("http://{}/health", served.health))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
}

#[tokio::test]
async fn with_postgres_down_health_is_up_deep_is_503_and_downloads_go_on() {
    let rig = Rig::new().await;
    let served = Served::with(rig, &[("DB_PORT", &dead_port())], Limits::default()).await;
    served.archive(1, BIG, b"still here", "a.mp4");

    let started = Instant::now();
    let (code, _) = json(&served.url("/health")).await;
    assert_eq!(code, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/health touched a dependency"
    );

    let started = Instant::now();
    let (code, body) = json(&format!("http://{}/health/deep", served.health)).await;
    assert_eq!(code, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(8), "deep checks are bounded");
    assert_eq!(body["status"], "fail");
    assert_eq!(body["checks"]["postgres"]["ok"], false);
    assert!(body["checks"]["postgres"]["error"]
        .as_str()
        .unwrap()
        .contains("database"));
    assert_eq!(body["checks"]["ledger"]["ok"], true);
    let (code, public) = json(&served.url("/health/deep")).await;
    assert_eq!(code, 503);
    assert_eq!(
        public["checks"]["postgres"]["error"], "failed",
        "no details on the public port"
    );

    let resp = reqwest::get(served.link(1, BIG)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the ledger answers without PostgreSQL");
    assert_eq!(resp.text().await.unwrap(), "still here");
    let (code, _) = raw_get(
        served.files,
        &format!("/2026/03/9-unknown.mp4?token={}", served.token(9)),
    )
    .await;
    assert_eq!(code, 503, "a path only PostgreSQL could vouch for: try later");
}

/// Starts a download of `len` bytes and reads its first chunk.
async fn download_started(served: &Served, len: usize) -> (reqwest::Response, Vec<u8>) {
    served.archive(1, BIG, &pattern(len), "big.bin");
    let mut resp = reqwest::get(served.link(1, BIG)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let first = resp.chunk().await.unwrap().unwrap().to_vec();
    (resp, first)
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_a_download_finish() {
    download_in_flight_survives_shutdown(Limits::default()).await;
}

/// Shutdown during a 64 MiB download under `limits`: no new connection is accepted, the
/// download completes intact and is logged complete, and the drain ends.
pub(crate) async fn download_in_flight_survives_shutdown(limits: Limits) {
    let mut served = Served::with(Rig::new().await, &[], limits).await;
    let len = 64 << 20;
    let (mut resp, mut got) = download_started(&served, len).await;
    served.shutdown.cancel();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(served.files).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert!(got == pattern(len), "the download in flight completed intact");
    tokio::time::timeout(Duration::from_secs(10), served.stop())
        .await
        .expect("drained");
    let line = &served.logs.access(&format!("/{BIG}"), 1).await[0];
    assert_eq!(
        (line["status"].as_u64(), line["bytes"].as_u64()),
        (Some(200), Some(len as u64))
    );
    assert_eq!(line["complete"], true);
}

#[tokio::test]
async fn the_grace_period_cuts_a_stalled_download() {
    let rig = Rig::new().await;
    let mut served = Served::with(rig, &[("SHUTDOWN_GRACE", "1s")], Limits::default()).await;
    let len = 64 << 20;
    let (mut resp, first) = download_started(&served, len).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), served.stop())
        .await
        .expect("grace enforced");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the grace period"
    );
    let mut total = first.len();
    while let Ok(Some(chunk)) = resp.chunk().await {
        total += chunk.len();
    }
    assert!(total < len, "the stalled download was cut");
    let line = &served.logs.access(&format!("/{BIG}"), 1).await[0];
    assert_eq!(line["complete"], false);
}

#[tokio::test]
async fn header_limits_slowloris_and_stalled_readers_are_cut() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let served = Served::with(Rig::new().await, &[], limits).await;
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw(served.files, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let started = Instant::now();
    let answer = raw(served.files, b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    assert!(!answer.contains("200"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "slow headers are cut");

    served.archive(1, BIG, &pattern(64 << 20), "big.bin");
    let mut stream = TcpStream::connect(served.files).await.unwrap();
    let request = format!("GET /{BIG}?token={} HTTP/1.1\r\nHost: x\r\n\r\n", served.token(1));
    stream.write_all(request.as_bytes()).await.unwrap();
    // The scenario itself: a client that stops reading for longer than the idle timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(received.len() < 64 << 20, "the stalled download was cut");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let served = Served::with(Rig::new().await, &[("MAX_CONNECTIONS", "1")], Limits::default()).await;
    let holder = TcpStream::connect(served.files).await.unwrap();
    let mut waiting = TcpStream::connect(served.files).await.unwrap();
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err() && answer.is_empty(), "served beyond the cap");
    drop(holder);
    tokio::time::timeout(Duration::from_secs(5), waiting.read_to_end(&mut answer))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

/// Sends `head` (request line and headers, without the blank line) on a fresh connection and
/// returns the status of the answer, asserting a full status line came back.
async fn answered(addr: std::net::SocketAddr, head: &str) -> u16 {
    let answer = raw(addr, format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await;
    let line = answer.lines().next().unwrap_or_default();
    let version = line.get(..9).filter(|v| *v == "HTTP/1.1 " || *v == "HTTP/1.0 ");
    let code = version.and_then(|_| line.get(9..12));
    let code = code.and_then(|c| c.parse().ok());
    assert!(
        line.len() > 12 && code.is_some(),
        "{head:?}: no status line in {answer:?}"
    );
    code.unwrap()
}

#[tokio::test]
async fn every_request_target_form_gets_an_http_answer_and_the_server_lives_on() {
    let served = Served::new().await;
    let host = "Host: files.example";
    // (request line, answer on the file port, answer on the health port)
    let cases = [
        ("CONNECT 127.0.0.1:8080 HTTP/1.1", 405, 405),
        ("GET 127.0.0.1:8080 HTTP/1.1", 400, 400),
        ("HEAD files.example:443 HTTP/1.1", 400, 400),
        ("OPTIONS * HTTP/1.1", 405, 405),
        ("GET * HTTP/1.1", 400, 400),
        ("GET http://files.example/health HTTP/1.1", 200, 200),
        // `/` on the health port is the dashboard.
        ("GET http://files.example HTTP/1.1", 401, 200),
        ("GET http://files.example/2026/03/1-x.mp4?token=x HTTP/1.1", 401, 404),
        ("GET /health HTTP/1.0", 200, 200),
    ];
    for (line, files, health) in cases {
        for (addr, want) in [(served.files, files), (served.health, health)] {
            assert_eq!(
                answered(addr, &format!("{line}\r\n{host}")).await,
                want,
                "{line} on {addr}"
            );
            assert_eq!(
                answered(addr, &format!("GET /health HTTP/1.1\r\n{host}")).await,
                200,
                "still answering after {line}"
            );
        }
    }
    let logs = served.logs.text();
    assert!(!logs.contains("panic"), "{logs}");
}

#[tokio::test]
async fn http_1_1_without_exactly_one_valid_host_is_400() {
    let served = Served::new().await;
    let cases = [
        ("GET /health HTTP/1.1", 400),
        ("GET /health HTTP/1.1\r\nHost: a.example\r\nHost: b.example", 400),
        ("GET /health HTTP/1.1\r\nHost: a.example\r\nhost: a.example", 400),
        ("GET /health HTTP/1.1\r\nHost: bad host", 400),
        ("GET /health HTTP/1.1\r\nHost: user@files.example", 400),
        ("GET http://files.example/health HTTP/1.1", 400),
        ("GET /2026/03/1-x.mp4?token=x HTTP/1.1", 400),
        ("GET /health HTTP/1.1\r\nHost: files.example:8080", 200),
        ("GET /health HTTP/1.1\r\nHost: [::1]:8080", 200),
        // RFC 9112 §3.2: empty when the target URI has no authority; HTTP/1.0 needs none.
        ("GET /health HTTP/1.1\r\nHost:", 200),
        ("GET /health HTTP/1.0", 200),
    ];
    for (head, want) in cases {
        for addr in [served.files, served.health] {
            assert_eq!(answered(addr, head).await, want, "{head:?} on {addr}");
        }
    }
    assert_eq!(answered(served.files, "GET /health HTTP/1.1\r\nHost: x").await, 200);
}

#[tokio::test]
async fn every_answer_sent_in_full_is_logged_complete() {
    let served = Served::new().await;
    served.archive(1, BIG, &pattern(1000), "big.bin");
    let client = reqwest::Client::new();
    let file = served.link(1, BIG);
    let (files, health) = (served.files, served.health);
    let requests = [
        (client.get(served.url(&format!("/{BIG}"))), 401, format!("/{BIG}")),
        (
            client.get(served.link(1, "2026/03/1-none.bin")),
            404,
            "/2026/03/1-none.bin".to_owned(),
        ),
        (client.post(&file), 405, format!("/{BIG}")),
        (client.get(&file).header("if-match", "\"nope\""), 412, format!("/{BIG}")),
        (client.get(&file).header("range", "bytes=5000-"), 416, format!("/{BIG}")),
        (client.get(&file), 200, format!("/{BIG}")),
        (client.get(&file).header("range", "bytes=0-9"), 206, format!("/{BIG}")),
        (client.head(&file), 200, format!("/{BIG}")),
        (client.get(format!("http://{files}/health")), 200, "/health".to_owned()),
        (
            client.get(format!("http://{health}/health/deep")),
            200,
            "/health/deep".to_owned(),
        ),
        (
            client.get(format!("http://{health}/metrics")),
            200,
            "/metrics".to_owned(),
        ),
        (client.get(format!("http://{health}/status")), 200, "/status".to_owned()),
        (
            client.get(format!("http://{health}/nothing")),
            404,
            "/nothing".to_owned(),
        ),
    ];
    for (i, (req, want, path)) in requests.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        let body = resp.bytes().await.unwrap();
        let before = served.logs.lines().len();
        let lines = served.logs.access(&path, 1).await;
        let line = lines
            .iter()
            .rev()
            .find(|l| l["status"] == want)
            .unwrap_or_else(|| panic!("request {i}: no access line for {path} {want} (of {before} lines)"));
        assert_eq!(line["complete"], true, "request {i}: {line}");
        assert_eq!(line["bytes"].as_u64(), Some(body.len() as u64), "request {i}: {line}");
    }
}
