//! Benchmark context (`make bench`, row 3), not part of the product: what the ledger
//! alone costs a pass of small files. Writes, for `count` media with `in_flight` at once,
//! the entries a pass writes for a small object (`downloading` and `done` left to ride on
//! the next commit, `archived` awaited), with the fields a real pass fills, into a fresh
//! ledger under `dir`, the files arriving at `rate` per second as a pass's transfers finish
//! (which sets how many commits the group commit makes). No network, archive or log. The
//! harness reads its CPU time.
//!
//! Usage: `ledger_floor <dir> <count> <in_flight> <rate>`

use futures::{stream, StreamExt};
use r2_sync::state::{Entry, Ledger, Persist, Stage};

fn entry(id: u64, dir: &str) -> Entry {
    let mut e = Entry::new(id, format!("small/f{id:04}.bin"));
    e.etag = Some(format!("{id:032x}"));
    e.size = Some(100_000);
    e.temp_path = Some(format!("{dir}/.r2-sync-tmp/{id}.part"));
    e.archive_path = Some(format!("2026/11/{id}-f{id:04}.bin"));
    e.content_type = Some("application/octet-stream".into());
    e.original_filename = Some(format!("f{id:04}.bin"));
    e
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, count, in_flight, rate] = args.as_slice() else {
        panic!("usage: ledger_floor <dir> <count> <in_flight> <rate>");
    };
    let rate: f64 = rate.parse().expect("rate is a number");
    let count: u64 = count.parse().expect("count is a number");
    let in_flight: usize = in_flight.parse().expect("in_flight is a number");
    let ledger = Ledger::open(&std::path::Path::new(dir).join("ledger-floor.redb")).expect("ledger opens");
    let start = tokio::time::Instant::now();
    stream::iter(1..=count)
        .for_each_concurrent(in_flight, |id| {
            let ledger = &ledger;
            async move {
                tokio::time::sleep_until(start + std::time::Duration::from_secs_f64(id as f64 / rate)).await;
                let mut e = entry(id, dir);
                ledger
                    .set(&mut e, Stage::Downloading, Persist::Soon)
                    .await
                    .expect("queued");
                e.sha256 = Some(format!("{id:064x}"));
                e.bytes_done = 100_000;
                ledger
                    .set(&mut e, Stage::Downloaded, Persist::WithNext)
                    .await
                    .expect("moved");
                e.temp_path = None;
                ledger
                    .set(&mut e, Stage::Archived, Persist::Now)
                    .await
                    .expect("committed");
                ledger
                    .set(&mut e, Stage::Recorded, Persist::WithNext)
                    .await
                    .expect("moved");
                ledger.set(&mut e, Stage::Done, Persist::Soon).await.expect("queued");
            }
        })
        .await;
    ledger.flush().await.expect("flushed");
    println!("{count} media, {} commits", ledger.commits());
}
