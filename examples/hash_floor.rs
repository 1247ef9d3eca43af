//! Benchmark context (`make bench`, row 1), not part of the product: what the two
//! digests a sync computes cost alone. Reads each file given (from the page cache) in 1 MiB
//! pieces and feeds them to MD5 (the ETag check) and SHA-256 (the sidecar), with the crates
//! and features r2-sync uses; no network, disk writes or ffprobe. The harness reads its CPU
//! time.
//!
//! Usage: `hash_floor <file>...`

use std::io::Read;

use md5::{Digest, Md5};
use sha2::Sha256;

fn main() {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for path in std::env::args().skip(1) {
        let mut file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (mut md5, mut sha256) = (Md5::new(), Sha256::new());
        loop {
            let n = file.read(&mut buf).unwrap_or_else(|e| panic!("{path}: {e}"));
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            sha256.update(&buf[..n]);
            total += n as u64;
        }
        std::hint::black_box((md5.finalize(), sha256.finalize()));
    }
    println!("{total} bytes hashed");
}
