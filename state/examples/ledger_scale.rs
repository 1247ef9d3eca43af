//! What a ledger of N finished entries costs: file size per entry and the time of what every
//! pass, scrape and start-up reads. `cargo run --release -p r2-sync-state --example
//! ledger_scale -- 1000000 /tmp/ledger.redb` (the bench's ledger rows use it).
//!
//! `BUILD_ONLY=1` builds the file and prints its size and the time taken, nothing timed after
//! (`make bench` builds the ledger a running r2-sync then opens); `IN_FLIGHT=K` sets the
//! entries left in flight beside the N done ones (20 by default). Entry `id` has archive path
//! `2026/<MM>/<id>-clip <id>.mp4` with MM = 1 + id % 12, as the bench's rows in PostgreSQL.

use std::time::Instant;

use futures_executor::block_on;
use r2_sync_state::{Entry, Ledger, Persist, Query, Stage};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let path = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/ledger-scale.redb".into()));
    let in_flight: u64 = std::env::var("IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    drop(std::fs::remove_file(&path));
    let started = Instant::now();
    {
        let ledger = Ledger::open(&path).expect("open");
        for chunk in (1..=n).collect::<Vec<_>>().chunks(10_000) {
            for &id in chunk {
                let mut e = Entry::new(
                    id,
                    format!("uploads/{}/0b6e3c1e-9d7a-4f0e-8f55-{id:012}/clip {id}.mp4", id % 500),
                );
                e.archive_path = Some(format!("2026/{:02}/{id}-clip {id}.mp4", 1 + id % 12));
                e.size = Some(50_000_000 + id);
                e.bytes_done = 50_000_000 + id;
                e.etag = Some(format!("{id:032x}"));
                e.sha256 = Some(format!("{:064x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                e.content_type = Some("video/mp4".into());
                e.original_filename = Some(format!("clip {id}.mp4"));
                for stage in [Stage::Downloading, Stage::Downloaded, Stage::Archived, Stage::Recorded] {
                    block_on(ledger.set(&mut e, stage, Persist::WithNext)).expect("move");
                }
                block_on(ledger.set(&mut e, Stage::Done, Persist::Soon)).expect("queue");
            }
            block_on(ledger.flush()).expect("flush");
        }
        for id in n + 1..=n + in_flight {
            let mut e = Entry::new(id, format!("uploads/x/{id}.mp4"));
            block_on(ledger.set(&mut e, Stage::Downloading, Persist::Now)).expect("active");
        }
    }
    let written = started.elapsed();
    if std::env::var_os("BUILD_ONLY").is_some() {
        let bytes = std::fs::metadata(&path).expect("size").len();
        println!(
            "{{\"entries\":{n},\"in_flight\":{in_flight},\"file_bytes\":{bytes},\"bytes_per_entry\":{:.0},\"write_s\":{:.1}}}",
            bytes as f64 / n.max(1) as f64,
            written.as_secs_f64()
        );
        return;
    }
    if std::env::var_os("COMPACT").is_some() {
        let mut db = redb::Database::open(&path).expect("open for compaction");
        while db.compact().expect("compact") {}
    }
    let opened = Instant::now();
    let ledger = Ledger::open(&path).expect("reopen");
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let bytes = std::fs::metadata(&path).expect("size").len();
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    let counts_ms = time(&|| drop(ledger.counts().expect("counts")));
    let active_ms = time(&|| assert_eq!(ledger.active().expect("active").len() as u64, in_flight));
    let get_ms = time(&|| drop(ledger.get(n / 2).expect("get")));
    let path_ms = time(&|| drop(ledger.media_for_path(&format!("2026/01/{}-clip {}.mp4", 12, 12))));
    let failed_ms = time(&|| {
        let q = Query {
            stages: vec![Stage::Failed],
            limit: Some(50),
            ..Query::default()
        };
        ledger.scan(&q, |_| true).expect("scan");
    });
    println!(
        "{{\"entries\":{n},\"file_bytes\":{bytes},\"bytes_per_entry\":{:.0},\"write_s\":{:.1},\"open_ms\":{open_ms:.1},\
         \"counts_ms\":{counts_ms:.2},\"active_ms\":{active_ms:.2},\"get_ms\":{get_ms:.3},\"path_ms\":{path_ms:.3},\"failed_scan_ms\":{failed_ms:.2}}}",
        bytes as f64 / n as f64,
        written.as_secs_f64()
    );
}
