//! Row 6's physical limits: the disk's read speed (dd of the served file, page cache dropped
//! when the kernel lets us), and the test S3 server's own ceiling (curl GETs of the big
//! object, one stream and four ranged streams in parallel, SigV4-signed).

use std::process::{Child, Stdio};
use std::time::Instant;

use crate::harness::{calc, fail, io, output, Harness, Result, ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::harness::{say, sync_disks};

/// Drops the page cache when the kernel lets us (root outside a container): "cold cache",
/// else "cached".
pub fn drop_caches() -> &'static str {
    sync_disks();
    match std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        Ok(()) => "cold cache",
        Err(_) => "cached",
    }
}

/// Seconds, rounded as the bash harness's `elapsed` printed them.
pub fn elapsed(t0: Instant) -> f64 {
    let secs = t0.elapsed().as_secs_f64();
    calc(secs).parse().unwrap_or(secs)
}

impl Harness {
    pub fn bench_context(&mut self) -> Result<()> {
        say("row 6: disk read, and the S3 server's own ceiling");
        let file = self.serve_dir.join("bench/serve.bin");
        let serve = self.s.serve_bytes();
        let mut cache = "cached";
        for run in 1..=self.s.runs {
            cache = drop_caches();
            let t0 = Instant::now();
            let ok = self
                .command("dd")
                .arg(format!("if={}", file.display()))
                .args(["of=/dev/null", "bs=4M", "status=none"])
                .status()
                .is_ok_and(|s| s.success());
            let secs = elapsed(t0);
            if !ok {
                fail!("row 6: dd could not read {}", file.display());
            }
            self.record("dd.mbps", "dd", run, calc(serve as f64 / secs / 1e6))?;
        }
        self.meta("dd_cache", cache)?;

        // The S3 server alone, curl signing with SigV4: one stream, then 4 ranged streams.
        self.upload(&self.work.join("src/big"), "big")?;
        let url = format!("{}/{BUCKET}/big/f0001.bin", self.s3_url);
        let big = self.s.big_bytes();
        let curl = |h: &Harness| {
            let mut cmd = h.command("curl");
            cmd.args(["-fsS", "--aws-sigv4", "aws:amz:auto:s3", "--user"])
                .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-o", "/dev/null"]);
            cmd
        };
        for run in 1..=self.s.runs {
            let out = match output(
                curl(self).args(["-w", "%{size_download} %{time_total}"]).arg(&url),
                "curl",
            ) {
                Ok(out) => out,
                Err(_) => fail!("row 6: curl could not GET the object from the S3 server"),
            };
            let mut parts = out.split_whitespace();
            let size: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let secs: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            if size != big {
                fail!("row 6: the S3 server sent {size} of {big} bytes");
            }
            self.record("s3.mbps", "curl1", run, calc(size as f64 / secs / 1e6))?;

            let quarter = big / 4;
            let t0 = Instant::now();
            let mut children: Vec<Child> = Vec::new();
            for i in 0..4 {
                let from = i * quarter;
                let to = if i == 3 { big - 1 } else { (i + 1) * quarter - 1 };
                let child = curl(self)
                    .arg("-r")
                    .arg(format!("{from}-{to}"))
                    .arg(&url)
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(io("start curl"))?;
                self.clean.process(child.id());
                children.push(child);
            }
            let mut failed = false;
            for mut c in children {
                failed |= !c.wait().is_ok_and(|s| s.success());
            }
            if failed {
                fail!("row 6: a ranged curl from the S3 server failed");
            }
            let secs = elapsed(t0);
            self.record("s3.mbps", "curl4", run, calc(big as f64 / secs / 1e6))?;
        }
        Ok(())
    }
}
