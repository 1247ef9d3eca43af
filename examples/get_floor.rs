//! Benchmark context (`make bench`, row 3), not part of the product: what r2-sync's S3
//! client alone costs per small object. Fetches `<prefix>/f0001.<ext>` … `f<count>.<ext>`
//! with [`Storage::get_start`] (the very call a sync pass makes for an object of at most
//! 1 MiB), `concurrency` at once, optionally hashing each body as the pass does (`md5`: the
//! ETag check; `md5+sha256`: and the sidecar's SHA-256, with the same crates), and drops the
//! bodies: no disk, ledger, database or log. The harness reads its CPU time.
//!
//! Usage: `get_floor <prefix> <ext> <count> <concurrency> [md5|md5+sha256]`, with r2-sync's
//! own settings in the environment (the bucket's are the ones used).

use futures::{stream, StreamExt};
use md5::{Digest, Md5};
use r2_sync::config::Config;
use r2_sync::storage::{ObjectKey, Storage};
use sha2::Sha256;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, prefix, ext, count, concurrency, rest @ ..] = args.as_slice() else {
        panic!("usage: get_floor <prefix> <ext> <count> <concurrency> [md5|md5+sha256]");
    };
    let count: usize = count.parse().expect("count is a number");
    let concurrency: usize = concurrency.parse().expect("concurrency is a number");
    let (md5, sha256) = match rest.first().map(String::as_str) {
        None => (false, false),
        Some("md5") => (true, false),
        Some("md5+sha256") => (true, true),
        Some(other) => panic!("unknown hashes {other:?}: md5 or md5+sha256"),
    };
    let cfg = Config::from_env().unwrap_or_else(|e| panic!("settings: {e}"));
    let storage = Storage::new(&cfg.r2).expect("storage settings");
    let fetched: u64 = stream::iter(1..=count)
        .map(|i| {
            let storage = &storage;
            let key = format!("{prefix}/f{i:04}.{ext}");
            async move {
                let (_, body) = storage
                    .get_start(&ObjectKey::new(&key).expect("a plain key"), 1 << 20)
                    .await
                    .expect("GET");
                if md5 {
                    std::hint::black_box(Md5::digest(&body));
                }
                if sha256 {
                    std::hint::black_box(Sha256::digest(&body));
                }
                body.len() as u64
            }
        })
        .buffer_unordered(concurrency)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    println!("{count} objects, {fetched} bytes");
}
