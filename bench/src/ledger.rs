//! The ledger at scale: `r2-sync run` over a ledger of N finished entries and N archived rows:
//! start-up to serving, /metrics and /status, the `status` CLI, passes with nothing to claim,
//! memory, the ledger file's size.

use std::path::Path;
use std::time::{Duration, Instant};

use r2_sync_test_rig::net;
use rustix::process::{kill_process, Pid, Signal};

use crate::context::{drop_caches, elapsed};
use crate::harness::{calc, fail, io, last_msg, log_file, output, say, Harness, Result};
use crate::numfmt::median;
use crate::procfs;
use crate::settings::{ledger_sizes, LEDGER_INTERVAL, LEDGER_PASSES, LEDGER_REQUESTS};

/// The README's `CREATE INDEX CONCURRENTLY … idx_media_archive_path …;` statement (the index the
/// tables' owner is asked for): from its first word to the line's last `;`.
pub fn readme_index(readme: &str) -> Option<String> {
    readme.lines().find_map(|line| {
        let at = line.find("CREATE INDEX CONCURRENTLY")?;
        let rest = &line[at..];
        let name = rest.find("idx_media_archive_path")?;
        let end = rest.rfind(';').filter(|e| *e > name)?;
        Some(rest[..=end].to_owned())
    })
}

/// The "pass finished" log lines of `r2-sync run`.
pub fn pass_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("\"msg\":\"pass finished\""))
        .collect()
}

/// Whether a "pass finished" line says nothing was claimed.
pub fn claimed_nothing(line: &str) -> bool {
    line.contains("\"claimed\":0,") || line.contains("\"claimed\":0}")
}

/// The number after `"name":` in a JSON log line.
pub fn json_number(line: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\":");
    let at = line.find(&key)? + key.len();
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `%.3f` of the median (the bash harness's `median_of`).
fn median_text(v: &[f64]) -> String {
    median(v).map(calc).unwrap_or_default()
}

impl Harness {
    /// N rows archived before (status 'archived', none approved), each with the archive path
    /// examples/ledger_scale.rs gives its ledger entry; then the index on archive_path the
    /// README asks the tables' owner for (its own statement), and ANALYZE.
    fn ledger_rows(&self, n: u64) -> Result<()> {
        self.db.exec(&format!(
            "INSERT INTO media (id, user_id, title, original_filename, content_type, file_size, r2_key, status,
                   storage_location, archive_path, archived_at, approved_at)
               SELECT g, 7, 'bench', format('clip %s.mp4', g), 'video/mp4', 50000000 + g,
                      format('uploads/%s/0b6e3c1e-9d7a-4f0e-8f55-%s/clip %s.mp4', g % 500, lpad(g::text, 12, '0'), g),
                      'archived', 'unraid', format('2026/%s/%s-clip %s.mp4', lpad((1 + g % 12)::text, 2, '0'), g, g),
                      now(), now()
               FROM generate_series(1, {n}) g"
        ))?;
        self.db
            .exec(&format!("SELECT setval(pg_get_serial_sequence('media', 'id'), {n})"))?;
        if self.db.value("SELECT count(*) FROM media WHERE status = 'archived'")? != n.to_string() {
            fail!("ledger: the scratch database does not hold {n} archived rows");
        }
        let readme = std::fs::read_to_string(self.root.join("README.md")).map_err(io("read README.md"))?;
        let Some(index) = readme_index(&readme) else {
            fail!("ledger: the README's CREATE INDEX ... idx_media_archive_path statement is gone");
        };
        self.db.exec(&index)?;
        self.db.exec("ANALYZE media")?;
        Ok(())
    }

    /// `curl -s -o BODY -w '%{http_code} %{time_total}' URL`: the code and seconds.
    fn curl_timed(&self, url: &str, body: &Path) -> Option<(String, f64)> {
        let out = output(
            self.command("curl")
                .arg("-s")
                .arg("-o")
                .arg(body)
                .args(["-w", "%{http_code} %{time_total}"])
                .arg(url),
            "curl",
        )
        .ok()?;
        let (code, secs) = out.split_once(' ')?;
        Some((code.to_owned(), secs.trim().parse().ok()?))
    }

    /// Median milliseconds of COUNT GETs of URL, one connection each (curl's time_total:
    /// connect to last byte); every answer must be 200 (and contain CHECK).
    fn http_ms(&self, url: &str, count: u32, check: &str) -> Result<String> {
        let body = self.logs().join("http.body");
        let mut ms = Vec::new();
        for _ in 0..count {
            let Some((code, secs)) = self.curl_timed(url, &body) else {
                fail!("ledger: GET {url} failed");
            };
            let text = std::fs::read(&body).unwrap_or_default();
            let head = String::from_utf8_lossy(&text[..text.len().min(300)]).into_owned();
            if code != "200" {
                fail!("ledger: GET {url} answered {code}: {head}");
            }
            if !check.is_empty() && !String::from_utf8_lossy(&text).contains(check) {
                fail!("ledger: GET {url} lacks '{check}': {head}");
            }
            ms.push(calc(secs * 1000.0).parse().unwrap_or(secs * 1000.0));
        }
        Ok(median_text(&ms))
    }

    /// The HTTP status of a GET (curl's `%{http_code}`; "000" when nothing answered).
    fn http_code(&self, url: &str) -> String {
        output(
            self.command("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(url),
            "curl",
        )
        .unwrap_or_else(|_| "000".to_owned())
    }

    /// Build, start, measure, stop.
    fn ledger_at(&self, n: u64) -> Result<()> {
        say(format!("ledger: {n} finished entries and {n} archived rows"));
        self.reset_r2sync()?;
        self.ledger_rows(n)?;
        let file = self.work.join("state/r2-sync.redb");
        let built = match output(
            self.command(self.bin.join("examples/ledger_scale"))
                .env("BUILD_ONLY", "1")
                .env("IN_FLIGHT", "0")
                .arg(n.to_string())
                .arg(&file),
            "examples/ledger_scale",
        ) {
            Ok(b) => b,
            Err(_) => fail!("ledger: examples/ledger_scale could not build the ledger"),
        };
        say(format!("  built: {built}"));
        let port = net::free_port().map_err(io("find a free port"))?;
        let hport = net::free_port().map_err(io("find a free port"))?;
        let log = self.logs().join(format!("ledger-run-{n}.log"));
        let env = [
            format!("SERVER_PORT={port}"),
            format!("HEALTH_PORT={hport}"),
            format!("SYNC_INTERVAL={LEDGER_INTERVAL}"),
            "LOG_LEVEL=info".to_owned(),
        ];
        let health = format!("http://127.0.0.1:{hport}");
        // A start after a reboot: the ledger just written, and PostgreSQL's files, out of the
        // page cache when the kernel lets us (root outside a container), as in row 6.
        let cache = drop_caches();
        self.meta("ledger_cache", cache)?;
        let mut recorded: Vec<(&str, String)> = Vec::new();
        let t0 = Instant::now();
        let (out, err) = log_file(&log)?;
        let argv = self.r2_argv(&env, &[], &["run"]);
        let mut child = self.spawn(self.argv_command(&argv).stdout(out).stderr(err), "r2-sync run")?;
        let pid = child.id();
        // Start-up to serving: the first 200 from /health, then from /health/deep
        // (PostgreSQL, bucket, archive, ledger), polled every 5 ms.
        let deadline = t0 + Duration::from_secs(30);
        let (mut t_up, mut t_deep) = (None, None);
        while Instant::now() < deadline {
            if !procfs::alive(pid) {
                fail!("ledger: r2-sync run exited: {}", last_msg(&log));
            }
            if t_up.is_none() && self.http_code(&format!("{health}/health")) == "200" {
                t_up = Some(elapsed(t0));
            }
            if t_up.is_some() && self.http_code(&format!("{health}/health/deep")) == "200" {
                t_deep = Some(elapsed(t0));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (Some(up), Some(deep)) = (t_up, t_deep) else {
            fail!(
                "ledger: r2-sync run did not answer 200 on /health and /health/deep within 30 s: {}",
                last_msg(&log)
            );
        };
        recorded.push(("startup_ms", calc(up * 1000.0)));
        recorded.push(("deep_ms", calc(deep * 1000.0)));
        // /metrics: the ledger's gauges are read on each scrape.
        recorded.push((
            "metrics_ms",
            self.http_ms(
                &format!("{health}/metrics"),
                LEDGER_REQUESTS,
                &format!("stage=\"done\"}} {n}"),
            )?,
        ));
        // The status summary: GET /status, then the CLI, which finds the ledger in use and asks
        // the running process (what an operator types).
        recorded.push((
            "status_http_ms",
            self.http_ms(&format!("{health}/status"), LEDGER_REQUESTS, &format!("\"done\":{n}"))?,
        ));
        let status_out = self.logs().join(format!("ledger-status-{n}.out"));
        let status_argv = self.r2_argv(&env, &[], &["status"]);
        let mut cli = Vec::new();
        for _ in 0..10 {
            let (out, err) = log_file(&status_out)?;
            let t1 = Instant::now();
            let ok = self
                .argv_command(&status_argv)
                .stdout(out)
                .stderr(err)
                .status()
                .is_ok_and(|s| s.success());
            let secs = elapsed(t1);
            let text = std::fs::read_to_string(&status_out).unwrap_or_default();
            if !ok {
                fail!("ledger: r2-sync status failed: {text}");
            }
            if !text.contains(&format!("done={n}")) {
                let head: Vec<&str> = text.lines().take(3).collect();
                fail!("ledger: r2-sync status does not say done={n}: {}", head.join("\n"));
            }
            cli.push(calc(secs * 1000.0).parse().unwrap_or(secs * 1000.0));
        }
        recorded.push(("status_cli_ms", median_text(&cli)));
        // Passes with nothing to claim: run's own, one at start-up and then every
        // SYNC_INTERVAL; their elapsed_ms from the "pass finished" log lines.
        let mut text = String::new();
        for _ in 0..600 {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            if pass_lines(&text).len() >= LEDGER_PASSES {
                break;
            }
            if !procfs::alive(pid) {
                fail!("ledger: r2-sync run exited: {}", last_msg(&log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let passes = pass_lines(&text);
        if passes.len() < LEDGER_PASSES {
            fail!(
                "ledger: r2-sync run logged {} passes, not {LEDGER_PASSES}, in 60 s",
                passes.len()
            );
        }
        if passes.iter().any(|l| !claimed_nothing(l)) {
            fail!("ledger: a pass claimed rows: {}", passes[0]);
        }
        let pass_ms: Vec<u64> = passes.iter().filter_map(|l| json_number(l, "elapsed_ms")).collect();
        let as_f64: Vec<f64> = pass_ms.iter().map(|v| *v as f64).collect();
        recorded.push(("pass_ms", median_text(&as_f64)));
        self.meta(
            &format!("ledger.passes.{n}"),
            pass_ms.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        )?;
        // Memory: the peak of the whole process life (VmHWM), read before it stops.
        let hwm = procfs::status_kb(pid, "VmHWM").unwrap_or(0);
        let rss = procfs::status_kb(pid, "VmRSS").unwrap_or(0);
        recorded.push(("rss_mib", calc(hwm as f64 / 1024.0)));
        recorded.push(("rss_now_mib", calc(rss as f64 / 1024.0)));
        if let Some(p) = Pid::from_raw(pid as i32) {
            // Gone already is fine: its figures are read.
            kill_process(p, Signal::TERM).ok();
        }
        drop(child.wait());
        // Whatever run complained of is reported beside the figures.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let warned: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["warn", "error", "critical"]
                    .iter()
                    .any(|w| l.contains(&format!("\"level\":\"{w}\"")))
            })
            .collect();
        if let Some(first) = warned.first() {
            let first: String = first.chars().take(300).collect();
            say(format!(
                "  r2-sync run logged {} warning(s) or error(s), the first: {first}",
                warned.len()
            ));
            self.meta(
                &format!("ledger.warned.{n}"),
                format!("{} line(s), the first: {first}", warned.len()),
            )?;
        }
        let bytes = std::fs::metadata(&file).map_err(io("stat the ledger"))?.len();
        recorded.push(("file_mb", calc(bytes as f64 / 1e6)));
        recorded.push(("bytes_per_entry", calc(bytes as f64 / n as f64)));
        let mut summary = String::new();
        for (key, value) in &recorded {
            self.record(&format!("ledger.{key}"), &n.to_string(), 1, value)?;
            summary.push_str(&format!("{key}={value} "));
        }
        say(format!("  {summary}"));
        Ok(())
    }

    pub fn bench_ledger(&mut self) -> Result<()> {
        let sizes = ledger_sizes(&self.s.ledger_entries)?;
        for n in sizes {
            self.ledger_at(n)?;
        }
        let entries = self.s.ledger_entries.clone();
        self.meta("ledger_entries", &entries)?;
        self.meta("ledger_requests", LEDGER_REQUESTS)?;
        self.meta("ledger_interval", LEDGER_INTERVAL)?;
        self.meta(
            "ledger_command",
            format!(
                "BENCH_ONLY=\"{}\" BENCH_LEDGER_ENTRIES=\"{entries}\" make bench",
                self.s.only
            ),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_index_statement_is_found() {
        let readme = "text\n    CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_media_archive_path ON media (archive_path);  -- x;\n\
                      CREATE INDEX CONCURRENTLY idx_media_archive_path ON media (archive_path);\n";
        assert_eq!(
            readme_index(readme).as_deref(),
            Some("CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_media_archive_path ON media (archive_path);  -- x;")
        );
        assert_eq!(readme_index("CREATE INDEX CONCURRENTLY other;"), None);
        let real = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        assert!(readme_index(&real).is_some(), "the README still asks for the index");
    }

    #[test]
    fn pass_lines_give_their_figures() {
        let log = "{\"msg\":\"pass finished\",\"claimed\":0,\"elapsed_ms\":11}\n{\"msg\":\"other\"}\n\
                   {\"msg\":\"pass finished\",\"claimed\":3,\"elapsed_ms\":4}\n";
        let lines = pass_lines(log);
        assert_eq!(lines.len(), 2);
        assert!(claimed_nothing(lines[0]) && !claimed_nothing(lines[1]));
        assert!(claimed_nothing("{\"claimed\":0}"));
        assert_eq!(json_number(lines[0], "elapsed_ms"), Some(11));
        assert_eq!(median_text(&[11.0, 4.0, 1.0, 2.0, 1.0]), "2.000");
    }
}
