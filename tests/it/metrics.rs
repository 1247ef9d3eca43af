//! `GET /metrics`: real passes (two videos, one corrupt file) and a real download through
//! the parts `r2-sync run` wires (`context::Context`: one `Metrics` for the syncer and the server),
//! scraped on the health port; the file port (the tunnel's side) never serves them.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{media, object_key, NewMedia, Rig};
use r2_sync::context::Context;
use r2_sync::server::auth::{self, Grant};
use r2_sync::server::{serve, Limits};
use r2_sync::state::entry::now_secs;
use r2_sync::sync::Syncer;
use tokio_util::sync::CancellationToken;

async fn get(url: String) -> (u16, Vec<u8>) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

async fn scrape(health: SocketAddr) -> String {
    let resp = reqwest::get(format!("http://{health}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    resp.text().await.unwrap()
}

/// The value of one series, e.g. `r2sync_files_failed_total{reason="ffprobe"}`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// Uploads `bytes` as an approved upload named `name`; returns the media id.
async fn upload(rig: &Rig, name: &str, bytes: &[u8]) -> i64 {
    let key = format!("uploads/{name}");
    rig.storage().put(&object_key(&key), bytes, "video/mp4").await.unwrap();
    rig.insert_media(&NewMedia::approved(&key, name)).await
}

#[tokio::test]
async fn passes_and_downloads_are_counted_and_served_on_the_health_port_only() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let mut good = Vec::new();
    for name in ["a.mp4", "b.mp4"] {
        let bytes = std::fs::read(media::video(src.path(), name, 1)).unwrap();
        good.push((upload(&rig, name, &bytes).await, bytes.len() as u64));
    }
    let corrupt = std::fs::read(media::corrupt(src.path(), "bad.mp4", 50_000)).unwrap();
    upload(&rig, "bad.mp4", &corrupt).await;

    let parts = Arc::new(Context::open(rig.config(), r2_sync::logging::discard()).unwrap());
    let limits = Limits {
        bind_ip: [127, 0, 0, 1].into(),
        ..Limits::default()
    };
    let shutdown = CancellationToken::new();
    let running = serve(Arc::clone(&parts), limits, shutdown.clone()).await.unwrap();
    let (files, health) = (running.files_addr, running.health_addr);
    assert_ne!(files, health);
    let syncer = Syncer::new(Arc::clone(&parts));

    let report = syncer.pass(&shutdown).await;
    assert_eq!((report.archived, report.failed), (2, 1), "{report:?}");
    let text = scrape(health).await;
    let synced_bytes: u64 = good.iter().map(|(_, len)| len).sum();
    for (series, expected) in [
        ("r2sync_files_synced_total", 2.0),
        ("r2sync_bytes_synced_total", synced_bytes as f64),
        ("r2sync_files_failed_total{reason=\"ffprobe\"}", 1.0),
        ("r2sync_files_failed_total{reason=\"checksum\"}", 0.0),
        ("r2sync_files_failed_total{reason=\"key\"}", 0.0),
        ("r2sync_transfers_in_flight", 0.0),
        ("r2sync_owed_db_writes", 0.0),
        ("r2sync_ledger_entries{stage=\"done\"}", 2.0),
        ("r2sync_ledger_entries{stage=\"failed\"}", 1.0),
        ("r2sync_ledger_entries{stage=\"archived\"}", 0.0),
        ("r2sync_ledger_entries{stage=\"fail_pending\"}", 0.0),
        ("r2sync_pass_duration_seconds_count", 1.0),
        // A pass with a failed file is not a successful pass.
        ("r2sync_last_successful_pass_timestamp_seconds", 0.0),
    ] {
        assert_eq!(value(&text, series), expected, "{series}");
    }

    // Nothing left to claim: a successful pass.
    let before = now_secs();
    let report = syncer.pass(&shutdown).await;
    assert!(report.all_succeeded(), "{report:?}");
    let text = scrape(health).await;
    let stamp = value(&text, "r2sync_last_successful_pass_timestamp_seconds") as u64;
    assert!((before..=now_secs()).contains(&stamp), "{stamp} not in {before}..");
    assert_eq!(value(&text, "r2sync_pass_duration_seconds_count"), 2.0);
    assert_eq!(value(&text, "r2sync_files_synced_total"), 2.0);

    // A download through the file port.
    let (media_id, len) = good[0];
    let path = parts
        .ledger
        .get(media_id as u64)
        .unwrap()
        .unwrap()
        .archive_path
        .unwrap();
    let grant = Grant {
        media_id: media_id as u64,
        user_id: 7,
    };
    let token = auth::sign(&parts.cfg.server, grant, Duration::from_secs(600)).unwrap();
    let (status, body) = get(format!("http://{files}/{path}?token={token}")).await;
    assert_eq!((status, body.len() as u64), (200, len));
    let text = scrape(health).await;
    assert_eq!(
        value(&text, "r2sync_http_requests_total{route=\"file\",status=\"200\"}"),
        1.0
    );
    assert_eq!(value(&text, "r2sync_bytes_served_total"), len as f64);
    // The two scrapes before this one (a scrape is counted once its answer is sent).
    assert_eq!(
        value(&text, "r2sync_http_requests_total{route=\"metrics\",status=\"200\"}"),
        2.0
    );

    // The file port: /metrics is a path like any other, 401 without a token, 404 with one.
    let unknown = get(format!("http://{files}/no-such-file")).await;
    let without_token = get(format!("http://{files}/metrics")).await;
    assert_eq!(without_token, unknown);
    assert_eq!(without_token.0, 401);
    let with_token = get(format!("http://{files}/metrics?token={token}")).await;
    assert_eq!(with_token.0, 404);
    let body = String::from_utf8_lossy(&with_token.1);
    assert!(!body.contains("r2sync_"), "{body}");
    let (status, _) = get(format!("http://{health}/nothing-here")).await;
    assert_eq!(status, 404);
    let text = scrape(health).await;
    assert_eq!(
        value(&text, "r2sync_http_requests_total{route=\"file\",status=\"401\"}"),
        2.0
    );
    assert_eq!(
        value(&text, "r2sync_http_requests_total{route=\"file\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "r2sync_http_requests_total{route=\"other\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "r2sync_bytes_served_total"),
        len as f64,
        "error bodies are not downloads"
    );

    shutdown.cancel();
    running.finished().await;
}
