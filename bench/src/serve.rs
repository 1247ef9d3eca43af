//! Row 5: serving, `r2-sync serve` vs nginx over the same directory: one client downloading
//! the whole file (curl), and 1 MiB ranged GETs at random offsets on 64 connections (wrk with
//! bench/range.lua); both servers pinned to the same CPUs, the client to the others; each
//! server's CPU seconds per GB of body sent; and the idle RSS of `r2-sync run`.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use r2_sync_test_rig::net;
use rustix::process::{kill_process, Pid, Signal};

use crate::harness::{calc, fail, io, last_msg, log_file, output, rotate, say, Harness, Result};
use crate::procfs;
use crate::sync_rows::random_file;

/// How many CPUs a taskset list ("0", "0-1", "0,2-3") names.
pub fn cpu_count(list: &str) -> u32 {
    list.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
}

/// The CPUs a taskset list names.
fn cpu_set(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// The client's CPUs: `given` (BENCH_CLIENT_CPUS), else every CPU of `allowed` outside the
/// servers' set (the servers' set itself when none is left).
pub fn client_cpus(given: &str, servers: &str, allowed: &[usize]) -> String {
    if !given.is_empty() {
        return given.to_owned();
    }
    let pinned = cpu_set(servers);
    let rest: Vec<String> = allowed
        .iter()
        .filter(|c| !pinned.contains(c))
        .map(ToString::to_string)
        .collect();
    if rest.is_empty() {
        servers.to_owned()
    } else {
        rest.join(",")
    }
}

/// The client's CPUs for these settings on this machine.
pub fn client_cpus_now(s: &crate::settings::Settings) -> String {
    client_cpus(&s.client_cpus, &s.serve_cpus, &allowed_cpus())
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    rustix::thread::sched_getaffinity(None).map_or_else(
        |_| Vec::new(),
        |set| {
            (0..rustix::thread::CpuSet::MAX_CPU)
                .filter(|c| set.is_set(*c))
                .collect()
        },
    )
}

/// wrk's requests per second (as printed) and request count.
pub fn wrk_figures(log: &str) -> Option<(String, u64)> {
    let rps = log
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())?;
    let requests = log.lines().find_map(|l| {
        let (n, rest) = l.trim_start().split_once(' ')?;
        if rest.starts_with("requests in ") {
            n.parse().ok()
        } else {
            None
        }
    })?;
    Some((rps, requests))
}

/// The first `http…` word of a command's output (`r2-sync token` prints the signed URL).
pub fn first_url(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.find("http")
            .map(|at| l[at..].split(' ').next().unwrap_or("").to_owned())
    })
}

/// Until `url` answers (any status below 500), at most 10 s; false when `pid` ended first.
fn wait_http(url: &str, pid: Option<u32>) -> bool {
    for _ in 0..100 {
        if let Ok(a) = net::get(url, &[("Range", "bytes=0-0")], Duration::from_secs(2)) {
            if a.status < 500 {
                return true;
            }
        }
        if pid.is_some_and(|p| !procfs::alive(p)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Stops a server: SIGTERM, then wait.
fn stop(child: &mut Child) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        // Already gone is fine.
        kill_process(pid, Signal::TERM).ok();
    }
    drop(child.wait());
}

/// The two servers of row 5.
struct Servers {
    nginx: Child,
    nginx_url: String,
    r2: Option<(Child, String)>,
}

impl Harness {
    pub fn make_serve_file(&mut self) -> Result<()> {
        self.serve_dir = self.work.join("serve");
        let dir = self.serve_dir.join("bench");
        std::fs::create_dir_all(&dir).map_err(io("create the served file's folder"))?;
        random_file(&dir.join("serve.bin"), self.s.serve_bytes())
    }

    fn client_cpus(&self) -> String {
        client_cpus_now(&self.s)
    }

    fn start_nginx(&self, serve_rel: &str) -> Result<(Child, String)> {
        let port = net::free_port().map_err(io("find a free port"))?;
        let dir = self.work.join("nginx");
        std::fs::create_dir_all(&dir).map_err(io("create nginx's folder"))?;
        let d = dir.display();
        // The temp dir is 0700: as root, nginx's workers must be root to read it.
        let user_line = if rustix::process::getuid().is_root() {
            "user root;"
        } else {
            ""
        };
        let conf = format!(
            "{user_line}
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
",
            workers = cpu_count(&self.s.serve_cpus),
            root = self.serve_dir.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, &conf).map_err(io("write nginx.conf"))?;
        let mut cmd = self.command("taskset");
        cmd.arg("-c")
            .arg(&self.s.serve_cpus)
            .arg(&self.nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"));
        let child = self.spawn(&mut cmd, "nginx")?;
        // The report prints the config (with the temp dir's paths as they were).
        let kept = self.work.join("nginx.conf.txt");
        std::fs::write(&kept, &conf).map_err(io("keep nginx.conf"))?;
        self.meta("nginx_conf_file", kept.display())?;
        if !wait_http(&format!("http://127.0.0.1:{port}/bench/serve.bin"), None) {
            fail!(
                "nginx did not start: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        Ok((child, format!("http://127.0.0.1:{port}/{serve_rel}")))
    }

    /// Starts `r2-sync serve` over the serving directory and gets a signed URL; on a failure
    /// the reason (the row reads TODO). The file served is one r2-sync archived itself
    /// (uploaded, then one `sync --once`), so its ledger knows it, as it knows every file it
    /// archived in production; its path (returned) is the one nginx serves too.
    fn start_r2sync_serve(&self, serve_rel: &mut String) -> Result<std::result::Result<(Child, String), String>> {
        self.reset_r2sync()?;
        self.upload(&self.serve_dir.join("bench"), "servesrc")?;
        let id = self.db.value(
            "INSERT INTO media (user_id, title, original_filename, content_type, r2_key, status,
                        storage_location, approved_at)
                    VALUES (7, 'bench', 'serve.bin', 'application/octet-stream', 'servesrc/serve.bin',
                        'approved', 'r2', now()) RETURNING id",
        )?;
        let archive = format!("ARCHIVE_DIR={}", self.serve_dir.display());
        let sync_log = self.logs().join("serve-sync.log");
        let (out, err) = log_file(&sync_log)?;
        let argv = self.r2_argv(
            &[archive.clone(), "VALIDATE_MEDIA=false".into()],
            &[],
            &["sync", "--once"],
        );
        if !self
            .argv_command(&argv)
            .stdout(out)
            .stderr(err)
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok(Err(format!(
                "`r2-sync sync --once` could not archive the file to serve: {}",
                last_msg(&sync_log)
            )));
        }
        *serve_rel = self.db.value(&format!(
            "SELECT archive_path FROM media WHERE id = {id} AND status = 'archived'"
        ))?;
        if serve_rel.is_empty() {
            fail!("row 5: the file to serve was not archived");
        }
        let port = net::free_port().map_err(io("find a free port"))?;
        let health = net::free_port().map_err(io("find a free port"))?;
        let env = [
            archive,
            format!("SERVER_PORT={port}"),
            format!("HEALTH_PORT={health}"),
            "LOG_LEVEL=warn".to_owned(),
        ];
        let help = self.r2_argv(&env, &[], &["token", "--help"]);
        if !self
            .argv_command(&help)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok(Err("`r2-sync token` is not available".into()));
        }
        let serve_log = self.logs().join("serve.log");
        let (out, err) = log_file(&serve_log)?;
        let mut argv: Vec<OsString> = vec!["taskset".into(), "-c".into(), self.s.serve_cpus.clone().into()];
        argv.extend(self.r2_argv(&env, &[], &["serve"]));
        let mut child = self.spawn(self.argv_command(&argv).stdout(out).stderr(err), "r2-sync serve")?;
        if !wait_http(&format!("http://127.0.0.1:{port}/health"), Some(child.id())) {
            stop(&mut child);
            return Ok(Err(format!(
                "`r2-sync serve` did not come up: {}",
                last_msg(&serve_log)
            )));
        }
        let token_err = self.logs().join("token.err");
        let base = format!("http://127.0.0.1:{port}");
        let token = self.r2_argv(
            &env,
            &[],
            &["token", "--media-id", &id, "--ttl", "2h", "--base-url", &base],
        );
        let printed = self
            .argv_command(&token)
            .stderr(std::fs::File::create(&token_err).map_err(io("create token.err"))?)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let Some(url) = first_url(&printed) else {
            stop(&mut child);
            let first: String = crate::harness::tail(&token_err, usize::MAX)
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect();
            return Ok(Err(format!("`r2-sync token` printed no URL ({first})")));
        };
        // Both servers must answer a 1 MiB range with exactly 1 MiB, or wrk measures nonsense.
        let got = output(
            self.command("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-r",
                    "0-1048575",
                    "-w",
                    "%{http_code} %{size_download}",
                ])
                .arg(&url),
            "curl",
        )
        .unwrap_or_default();
        if got != "206 1048576" {
            stop(&mut child);
            return Ok(Err(format!(
                "`r2-sync serve` answered a 1 MiB range with '{got}', not '206 1048576'"
            )));
        }
        Ok(Ok((child, url)))
    }

    fn record_cpu_per_gb(&self, key: &str, subject: &str, run: u32, c0: f64, c1: f64, bytes: u64) -> Result<()> {
        self.record(key, subject, run, calc((c1 - c0) / (bytes as f64 / 1e9)))
    }

    /// One client downloads the whole file.
    fn serve_one(&self, subject: &str, pid: u32, run: u32, url: &str) -> Result<()> {
        let c0 = procfs::tree_cpu_secs(pid);
        let out = match output(
            self.command("taskset")
                .arg("-c")
                .arg(self.client_cpus())
                .args([
                    "curl",
                    "-fsS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{size_download} %{time_total}",
                ])
                .arg(url),
            "curl",
        ) {
            Ok(out) => out,
            Err(_) => fail!("row 5: GET {url} failed"),
        };
        let c1 = procfs::tree_cpu_secs(pid);
        let mut parts = out.split_whitespace();
        let size: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let secs: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        let want = self.s.serve_bytes();
        if size != want {
            fail!("row 5: {subject} sent {size} of {want} bytes");
        }
        let mbps = calc(size as f64 / secs / 1e6);
        self.record("serve1.mbps", subject, run, &mbps)?;
        self.record_cpu_per_gb("serve1.cpu_per_gb", subject, run, c0, c1, size)?;
        say(format!(
            "  serve1-{subject}-{run}: {mbps} MB/s, {} CPU-s/GB",
            calc((c1 - c0) / (size as f64 / 1e9))
        ));
        Ok(())
    }

    fn wrk_command(&self, url: &str, latency: bool) -> std::process::Command {
        let mut cmd = self.command("taskset");
        cmd.arg("-c")
            .arg(self.client_cpus())
            .args(["wrk", "-t2", "-c64"])
            .arg(format!("-d{}s", self.s.wrk_secs));
        if latency {
            cmd.arg("--latency");
        }
        cmd.args(["-s", "bench/range.lua"])
            .arg(url)
            .arg("--")
            .arg(self.s.serve_bytes().to_string());
        cmd
    }

    /// wrk, 64 connections, random 1 MiB ranges.
    fn serve_ranges(&self, subject: &str, pid: u32, run: u32, url: &str) -> Result<()> {
        let log = self.logs().join(format!("wrk-{subject}-{run}.log"));
        let c0 = procfs::tree_cpu_secs(pid);
        let (out, err) = log_file(&log)?;
        let ok = self
            .wrk_command(url, true)
            .stdout(out)
            .stderr(err)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            fail!("row 5: wrk against {subject} failed: {}", crate::harness::tail(&log, 3));
        }
        let c1 = procfs::tree_cpu_secs(pid);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Non-2xx") || text.contains("Socket errors") {
            eprintln!("{text}");
            fail!("row 5: wrk saw errors against {subject} (above)");
        }
        let Some((rps, requests)) = wrk_figures(&text) else {
            fail!("row 5: no Requests/sec in wrk's output: {text}");
        };
        self.record("range.rps", subject, run, &rps)?;
        // Body bytes: every answer is a 1 MiB range (checked with curl before).
        self.record_cpu_per_gb("range.cpu_per_gb", subject, run, c0, c1, requests << 20)?;
        say(format!(
            "  range-{subject}-{run}: {rps} req/s, {} CPU-s/GB",
            calc((c1 - c0) / (requests as f64 * 1_048_576.0 / 1e9))
        ));
        Ok(())
    }

    /// One ranged wrk run against r2-sync under perf record (call graphs), not recorded.
    fn profile_ranges(&self, perf_file: &Path, pid: u32, url: &str) -> Result<()> {
        say(format!(
            "  profiling r2-sync serve under wrk into {}",
            perf_file.display()
        ));
        let (out, err) = log_file(&self.logs().join("perf.log"))?;
        let mut perf = self
            .command("perf")
            .args(["record", "-F", "999", "-g", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(perf_file)
            .arg("--")
            .arg("sleep")
            .arg(self.s.wrk_secs.to_string())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("start perf record"))?;
        self.clean.process(perf.id());
        let wrk_log = self.logs().join("wrk-profiled.log");
        let (out, err) = log_file(&wrk_log)?;
        if !self
            .wrk_command(url, false)
            .stdout(out)
            .stderr(err)
            .status()
            .is_ok_and(|s| s.success())
        {
            fail!("row 5: wrk under perf failed");
        }
        if !perf.wait().is_ok_and(|s| s.success()) {
            fail!(
                "perf record failed: {}",
                crate::harness::tail(&self.logs().join("perf.log"), 3)
            );
        }
        let text = std::fs::read_to_string(&wrk_log).unwrap_or_default();
        let rps = wrk_figures(&text).map(|(r, _)| r).unwrap_or_default();
        say(format!(
            "  under perf: {rps} req/s; perf report -i {}",
            perf_file.display()
        ));
        Ok(())
    }

    /// Idle RSS of `r2-sync run` (server + scheduler) after 5 s with nothing to do; the reason
    /// when `run` does not stay up.
    fn idle_rss(&self) -> Result<std::result::Result<(), String>> {
        let port = net::free_port().map_err(io("find a free port"))?;
        let health = net::free_port().map_err(io("find a free port"))?;
        let env = [
            format!("ARCHIVE_DIR={}", self.serve_dir.display()),
            format!("SERVER_PORT={port}"),
            format!("HEALTH_PORT={health}"),
            "SYNC_INTERVAL=1h".to_owned(),
            "LOG_LEVEL=warn".to_owned(),
        ];
        let log = self.logs().join("run.log");
        let (out, err) = log_file(&log)?;
        let argv = self.r2_argv(&env, &[], &["run"]);
        let mut child = self.spawn(self.argv_command(&argv).stdout(out).stderr(err), "r2-sync run")?;
        std::thread::sleep(Duration::from_secs(5));
        if !procfs::alive(child.id()) {
            drop(child.wait());
            return Ok(Err(format!("`r2-sync run` exited at once: {}", last_msg(&log))));
        }
        let kb = procfs::status_kb(child.id(), "VmRSS").unwrap_or(0);
        self.record("idle.rss_mib", "r2sync", 1, calc(kb as f64 / 1024.0))?;
        say(format!("  idle RSS of r2-sync run: {} MiB", kb / 1024));
        stop(&mut child);
        Ok(Ok(()))
    }

    pub fn bench_serve(&mut self) -> Result<()> {
        say(format!("row 5: serving a {}-byte file", self.s.serve_bytes()));
        let mut serve_rel = String::new();
        let r2 = match self.start_r2sync_serve(&mut serve_rel)? {
            Ok(r2) => Some(r2),
            Err(todo) => {
                say(format!("  r2-sync serve not measured: {todo}"));
                self.meta("todo.serve1.mbps", &todo)?;
                self.meta("todo.range.rps", &todo)?;
                None
            }
        };
        let rel = if serve_rel.is_empty() {
            "bench/serve.bin".to_owned()
        } else {
            serve_rel
        };
        let (nginx, nginx_url) = self.start_nginx(&rel)?;
        let mut servers = Servers { nginx, nginx_url, r2 };
        // Warm the page cache once so neither server pays for the first read.
        let file = self.serve_dir.join(&rel);
        std::fs::File::open(&file)
            .and_then(|mut f| std::io::copy(&mut f, &mut std::io::sink()))
            .map_err(io(format!("read {}", file.display())))?;
        let client = self.client_cpus();
        self.meta("serve_runs", self.s.serve_runs)?;
        self.meta("serve_cpus", &self.s.serve_cpus)?;
        self.meta("client_cpus", &client)?;
        self.meta(
            "serve_command",
            format!(
                "BENCH_ONLY=\"{}\" BENCH_SERVE_RUNS={} BENCH_SERVE_CPUS={} make bench",
                self.s.only, self.s.serve_runs, self.s.serve_cpus
            ),
        )?;
        say("  nginx's config:");
        let conf = std::fs::read_to_string(self.work.join("nginx.conf.txt")).unwrap_or_default();
        for line in conf.lines() {
            eprintln!("    {line}");
        }
        let nginx_pid = servers.nginx.id();
        for run in 1..=self.s.serve_runs {
            for subject in rotate(run, &["r2sync", "nginx"]) {
                match (subject, &servers.r2) {
                    ("nginx", _) => self.serve_one("nginx", nginx_pid, run, &servers.nginx_url)?,
                    (_, Some((child, url))) => self.serve_one("r2sync", child.id(), run, url)?,
                    _ => {}
                }
            }
            for subject in rotate(run, &["r2sync", "nginx"]) {
                match (subject, &servers.r2) {
                    ("nginx", _) => self.serve_ranges("nginx", nginx_pid, run, &servers.nginx_url)?,
                    (_, Some((child, url))) => self.serve_ranges("r2sync", child.id(), run, url)?,
                    _ => {}
                }
            }
        }
        if let (Some((child, url)), Some(perf)) = (&servers.r2, &self.s.serve_perf) {
            self.profile_ranges(perf, child.id(), url)?;
        }
        if let Some((child, _)) = servers.r2.as_mut() {
            stop(child);
        }
        if let Err(todo) = self.idle_rss()? {
            say(format!("  idle RSS not measured: {todo}"));
            self.meta("todo.idle.rss_mib", &todo)?;
        }
        // nginx keeps running until the end, as it always has (clean-up stops it).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_and_complement() {
        assert_eq!(cpu_count("0"), 1);
        assert_eq!(cpu_count("0-1"), 2);
        assert_eq!(cpu_count("0,2-3"), 3);
        assert_eq!(client_cpus("", "0", &[0, 1]), "1");
        assert_eq!(client_cpus("", "0", &[0]), "0", "one CPU: the same set");
        assert_eq!(client_cpus("", "1-2", &[0, 1, 2, 3]), "0,3");
        assert_eq!(client_cpus("3", "0", &[0, 1]), "3");
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn wrk_output_gives_rate_and_count() {
        let log = "Running 2s test @ http://x\n  2 threads and 64 connections\n  4587 requests in 2.00s, 4.48GB read\n\
                   Requests/sec:   2293.45\nTransfer/sec:      2.24GB\n";
        assert_eq!(wrk_figures(log), Some(("2293.45".to_owned(), 4587)));
        assert_eq!(wrk_figures("nothing"), None);
    }

    #[test]
    fn the_signed_url_is_the_first_http_word() {
        assert_eq!(
            first_url("note\nhttp://127.0.0.1:9/media/1?token=abc expires\n").as_deref(),
            Some("http://127.0.0.1:9/media/1?token=abc")
        );
        assert_eq!(first_url("none"), None);
    }
}
