//! File bodies on both paths, `sendfile` (page cache to socket) and buffered (read into
//! memory), byte for byte over real sockets: whole files, ranges, HEAD and error answers mixed
//! on one keep-alive connection, the same requests pipelined, files larger than one region,
//! files evicted from the page cache, a file that shrinks mid-download, a reader that stops
//! and a shutdown during a large transfer (server_ops runs it with sendfile); and the metric
//! that says which path was taken.

use crate::common;
use crate::server_support;

use std::time::Duration;

use common::Rig;
use r2_sync::server::Limits;
use server_support::{random_bytes, Served};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SMALL: &str = "2026/03/1-small.bin";
/// Larger than one sendfile region (4 MiB), and not a multiple of anything.
const BIG: &str = "2026/03/2-big.bin";

async fn served(sendfile: bool, limits: Limits) -> Served {
    Served::with(Rig::new().await, &[], Limits { sendfile, ..limits }).await
}

/// One answer read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 answer; `head` when it answers a HEAD (no body whatever the length).
async fn read_answer(conn: &mut BufReader<TcpStream>, head: bool) -> Answer {
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = match answer.header("content-length") {
        _ if head || status == 304 => 0,
        Some(len) => len.parse().unwrap(),
        None => 0,
    };
    answer.body = vec![0; len];
    conn.read_exact(&mut answer.body).await.unwrap();
    answer
}

struct Case {
    request: String,
    head: bool,
    status: u16,
    body: Vec<u8>,
}

/// A keep-alive mix: whole files, ranges (one across a region boundary), 404, health,
/// HEAD, a conditional 304, 416 and a 401, ending with the big file again.
fn mix(served: &Served, small: &[u8], big: &[u8], etag: &str) -> Vec<Case> {
    let get = |target: String, extra: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    let (s, b) = (
        format!("/{SMALL}?token={}", served.token(1)),
        format!("/{BIG}?token={}", served.token(2)),
    );
    let four = 4 << 20;
    let case = |request: String, status: u16, body: &[u8]| Case {
        head: request.starts_with("HEAD"),
        request,
        status,
        body: body.to_vec(),
    };
    vec![
        case(get(s.clone(), ""), 200, small),
        case(get(b.clone(), ""), 200, big),
        case(
            get(format!("/2026/03/1-none.bin?token={}", served.token(1)), ""),
            404,
            b"{\"error\":\"not found\"}",
        ),
        case(get("/health".into(), ""), 200, b"{\"status\":\"ok\"}"),
        case(get(b.clone(), "Range: bytes=10-99\r\n"), 206, &big[10..100]),
        case(
            get(b.clone(), &format!("Range: bytes={}-{}\r\n", four - 5, four + 1000)),
            206,
            &big[four - 5..four + 1001],
        ),
        case(get(b.clone(), &format!("If-None-Match: {etag}\r\n")), 304, b""),
        case(format!("HEAD {b} HTTP/1.1\r\nHost: x\r\n\r\n"), 200, b""),
        case(get(s.clone(), "Range: bytes=-7\r\n"), 206, &small[small.len() - 7..]),
        case(get(s.clone(), "Range: bytes=99999-\r\n"), 416, b""),
        case(
            get(format!("/{SMALL}"), ""),
            401,
            b"{\"error\":\"missing or invalid token\"}",
        ),
        case(get(b.clone(), "Range: bytes=5000000-\r\n"), 206, &big[5_000_000..]),
        case(get(b, ""), 200, big),
    ]
}

fn check(i: usize, case: &Case, got: &Answer) {
    assert_eq!(got.status, case.status, "request {i}: {}", case.request);
    assert!(
        got.body == case.body,
        "request {i}: body differs ({} bytes, {} expected): {}",
        got.body.len(),
        case.body.len(),
        case.request
    );
}

/// How many file bodies /metrics says went by `path`.
async fn bodies_by(served: &Served, path: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", served.health))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("r2sync_file_bodies_total{{path=\"{path}\"}} ");
    let line = text.lines().find_map(|l| l.strip_prefix(&series));
    line.unwrap_or_else(|| panic!("no {series} in {text}")).parse().unwrap()
}

async fn mixed_requests_are_byte_exact(sendfile: bool) {
    let served = served(sendfile, Limits::default()).await;
    let (small, big) = (random_bytes(1000), random_bytes((9 << 20) + 13));
    served.archive(1, SMALL, &small, "small.bin");
    served.archive(2, BIG, &big, "big.bin");
    let etag = reqwest::get(served.link(2, BIG)).await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let cases = mix(&served, &small, &big, &etag);

    // One request at a time on one keep-alive connection.
    let mut conn = BufReader::new(TcpStream::connect(served.files).await.unwrap());
    for (i, case) in cases.iter().enumerate() {
        conn.get_mut().write_all(case.request.as_bytes()).await.unwrap();
        check(i, case, &read_answer(&mut conn, case.head).await);
    }
    // All of them pipelined in one write, then every answer read in order.
    let mut conn = BufReader::new(TcpStream::connect(served.files).await.unwrap());
    let all: String = cases.iter().map(|c| c.request.as_str()).collect();
    conn.get_mut().write_all(all.as_bytes()).await.unwrap();
    for (i, case) in cases.iter().enumerate() {
        check(i, case, &read_answer(&mut conn, case.head).await);
    }

    // Bodies: the etag probe, then per round the 200s and 206s to GET.
    let bodies = 1 + 2 * cases
        .iter()
        .filter(|c| !c.head && matches!(c.status, 200 | 206) && c.request.contains("token"))
        .count() as u64;
    let (taken, other) = if sendfile {
        ("sendfile", "buffered")
    } else {
        ("buffered", "sendfile")
    };
    assert_eq!(bodies_by(&served, taken).await, bodies);
    assert_eq!(bodies_by(&served, other).await, 0);
    let lines = served.logs.access(&format!("/{BIG}"), 1).await;
    let whole = lines
        .iter()
        .filter(|l| l["status"] == 200 && l["bytes"] == big.len() as u64);
    assert!(whole.clone().all(|l| l["complete"] == true), "{lines:?}");
    assert!(whole.count() >= 4, "{lines:?}");
}

#[tokio::test]
async fn mixed_keep_alive_and_pipelined_requests_are_byte_exact_with_sendfile() {
    mixed_requests_are_byte_exact(true).await;
}

#[tokio::test]
async fn mixed_keep_alive_and_pipelined_requests_are_byte_exact_buffered() {
    mixed_requests_are_byte_exact(false).await;
}

#[tokio::test]
async fn files_out_of_the_page_cache_are_read_and_sent_intact() {
    let served = served(true, Limits::default()).await;
    let big = random_bytes((6 << 20) + 1);
    served.archive(2, BIG, &big, "big.bin");
    let file = std::fs::File::open(served.rig.archive_dir().join(BIG)).unwrap();
    file.sync_all().unwrap();
    for range in [None, Some("bytes=4194000-4194999")] {
        // Evicts the file's clean pages: the next read must come from the disk.
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let mut req = reqwest::Client::new().get(served.link(2, BIG));
        if let Some(range) = range {
            req = req.header("range", range);
        }
        let body = req.send().await.unwrap().bytes().await.unwrap();
        let want = if range.is_some() {
            &big[4_194_000..4_195_000]
        } else {
            &big[..]
        };
        assert!(body == want, "{range:?}: {} bytes", body.len());
    }
}

/// A file truncated in place mid-download (the archive never does this: its files are renamed
/// in, never rewritten): the body is cut short of its Content-Length, the connection closed and
/// the access line says incomplete. The buffered path sends only bytes it read from the file;
/// with sendfile, bytes already queued on the socket are read from the page cache as they leave,
/// so those past the new end may arrive as zeros (module sendfile, "Files changed in place"):
/// every byte before the new end is the file's all the same.
async fn shrinking_file_cuts_the_body(sendfile: bool) {
    let served = served(sendfile, Limits::default()).await;
    let len = 64 << 20;
    let big = random_bytes(len);
    served.archive(2, BIG, &big, "big.bin");
    let mut resp = reqwest::get(served.link(2, BIG)).await.unwrap();
    let mut got = resp.chunk().await.unwrap().unwrap().to_vec();
    let kept = 1 << 20;
    std::fs::File::options()
        .write(true)
        .open(served.rig.archive_dir().join(BIG))
        .unwrap()
        .set_len(kept as u64)
        .unwrap();
    while let Ok(Some(chunk)) = resp.chunk().await {
        got.extend_from_slice(&chunk);
    }
    assert!(got.len() < len, "a short body, never padded to Content-Length");
    let checked = if sendfile { got.len().min(kept) } else { got.len() };
    let first_diff = got[..checked].iter().zip(&big).position(|(a, b)| a != b);
    assert_eq!(
        first_diff,
        None,
        "bytes the file held are sent as they were ({} bytes)",
        got.len()
    );
    let line = &served.logs.access(&format!("/{BIG}"), 1).await[0];
    assert_eq!(line["complete"], false, "{line}");
}

#[tokio::test]
async fn a_file_that_shrinks_mid_download_cuts_the_connection_with_sendfile() {
    shrinking_file_cuts_the_body(true).await;
}

#[tokio::test]
async fn a_file_that_shrinks_mid_download_cuts_the_connection_buffered() {
    shrinking_file_cuts_the_body(false).await;
}

async fn stalled_reader_is_cut(sendfile: bool) {
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let served = served(sendfile, limits).await;
    let len = 64 << 20;
    let big = random_bytes(len);
    served.archive(2, BIG, &big, "big.bin");
    let mut stream = TcpStream::connect(served.files).await.unwrap();
    let request = format!("GET /{BIG}?token={} HTTP/1.1\r\nHost: x\r\n\r\n", served.token(2));
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server closed the connection");
    let body_at = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &received[body_at..];
    assert!(body.len() < len, "the stalled download was cut");
    assert!(body == &big[..body.len()], "what was sent is the file's first bytes");
    let line = &served.logs.access(&format!("/{BIG}"), 1).await[0];
    assert_eq!(line["complete"], false, "{line}");
}

#[tokio::test]
async fn a_reader_that_stops_is_cut_at_the_idle_timeout_with_sendfile() {
    stalled_reader_is_cut(true).await;
}

#[tokio::test]
async fn a_reader_that_stops_is_cut_at_the_idle_timeout_buffered() {
    stalled_reader_is_cut(false).await;
}

/// With sendfile (the default limits), server_ops runs the same scenario.
#[tokio::test]
async fn shutdown_lets_a_large_buffered_transfer_finish() {
    let limits = Limits {
        sendfile: false,
        ..Limits::default()
    };
    crate::server_ops::download_in_flight_survives_shutdown(limits).await;
}
