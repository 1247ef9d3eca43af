//! The harness's state and the steps every row shares: set-up (tools, release build, work
//! directory, fresh filesystem, minimal ffprobes, test S3 server, scratch database), recording
//! results, timing a command under GNU time, resetting r2-sync, uploading, and checking what a
//! pass left behind.

use std::ffi::OsString;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use r2_sync_test_rig::pg::Postgres;
use r2_sync_test_rig::s3::{Keys, S3Server};
use tokio::runtime::Handle;

use crate::cleanup::{Mount, Shared};
use crate::db::{Db, DbError};
use crate::procfs;
use crate::settings::Settings;
use crate::verify_archive::{self, ArchivedRow};

pub const ACCESS_KEY: &str = "bench-access";
pub const SECRET_KEY: &str = "bench-secret-key";
pub const TUNNEL_SECRET: &str = "bench-tunnel-secret-0123456789abcdef-0123456789";
pub const BUCKET: &str = "media";

/// Why the bench stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    S3(#[from] r2_sync_test_rig::s3::S3Error),
    #[error(transparent)]
    Pg(#[from] r2_sync_test_rig::pg::PgError),
    #[error(transparent)]
    KillAt(#[from] crate::kill_at::KillAtError),
    #[error(transparent)]
    FileFloor(#[from] crate::file_floor::FileFloorError),
    #[error(transparent)]
    Proc(#[from] crate::procfs::ProcError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// Stops the bench with a message (the bash harness's `die`).
macro_rules! fail {
    ($($t:tt)*) => {
        return Err($crate::harness::BenchError::Failed(format!($($t)*)))
    };
}
pub(crate) use fail;

/// An I/O error, saying what was being done.
pub fn io(what: impl Display) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.to_string();
    move |source| BenchError::Io { what, source }
}

/// A progress line on standard error.
pub fn say(msg: impl Display) {
    eprintln!("[bench {}] {msg}", chrono::Local::now().format("%T"));
}

/// `%.3f`, as the bash harness's awk printed every derived figure.
pub fn calc(x: f64) -> String {
    format!("{x:.3}")
}

/// The items, starting at (run - 1) mod n: runs alternate, and the order rotates from run to
/// run so that no tool always goes first (warm caches, the other tool's writeback).
pub fn rotate<T: Clone>(run: u32, items: &[T]) -> Vec<T> {
    let n = items.len();
    (0..n).map(|i| items[(run as usize - 1 + i) % n].clone()).collect()
}

/// Where results and the run's description are written (the report's input).
pub struct Recorder {
    pub results: PathBuf,
    pub meta: PathBuf,
}

impl Recorder {
    fn append(path: &Path, line: String) -> Result<()> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(io(format!("append to {}", path.display())))
    }

    /// One measurement of one run.
    pub fn record(&self, key: &str, subject: &str, run: impl Display, value: impl Display) -> Result<()> {
        Self::append(&self.results, format!("{key}\t{subject}\t{run}\t{value}\n"))
    }

    pub fn meta(&self, key: &str, value: impl Display) -> Result<()> {
        Self::append(&self.meta, format!("{key}\t{value}\n"))
    }
}

/// Runs `cmd`; its standard output, trimmed; a failure names `what`.
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stderr(Stdio::piped()).output().map_err(io(what))?;
    if !out.status.success() {
        fail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `cmd` with its output going to ours; a failure names `what`.
pub fn status(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().map_err(io(what))?;
    if !st.success() {
        fail!("{what} failed ({st})");
    }
    Ok(())
}

/// `sync`: earlier runs' dirty pages flushed, untimed.
pub fn sync_disks() {
    rustix::fs::sync();
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The "msg" of a file's last JSON log line (or its last line, cut), for a one-line reason.
pub fn last_msg(path: &Path) -> String {
    let line = tail(path, 1);
    match line.find("\"msg\":\"") {
        Some(at) => line[at + 7..].split('"').next().unwrap_or("").to_owned(),
        None => line.chars().take(100).collect(),
    }
}

/// A file for a child's output (standard output and error both).
pub fn log_file(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = File::create(path).map_err(io(format!("create {}", path.display())))?;
    let g = f.try_clone().map_err(io("duplicate a log file"))?;
    Ok((Stdio::from(f), Stdio::from(g)))
}

/// The same, appending.
pub fn append_log(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(format!("open {}", path.display())))?;
    let g = f.try_clone().map_err(io("duplicate a log file"))?;
    Ok((Stdio::from(f), Stdio::from(g)))
}

/// Earlier runs' output is moved aside, not deleted, until the end. This machine's disk is
/// ext4 without a journal, whose inode allocator skips inodes freed in the last minute (six
/// while dirty) one by one (recently_deleted): after an `rm -rf` of thousands of files, every
/// file created next cost a scan past them, and whichever tool ran next paid for the previous
/// one's clean-up.
pub fn discard(dirs: &[&Path]) -> Result<()> {
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        let trash = dir.parent().unwrap_or(Path::new("/")).join("trash");
        std::fs::create_dir_all(&trash).map_err(io(format!("create {}", trash.display())))?;
        let bin = tempfile::Builder::new()
            .prefix("")
            .tempdir_in(&trash)
            .map_err(io(format!("make a folder in {}", trash.display())))?
            .keep();
        let name = dir.file_name().unwrap_or_default();
        std::fs::rename(dir, bin.join(name)).map_err(io(format!("move {} aside", dir.display())))?;
    }
    Ok(())
}

/// The environment every child gets: ours, without `RCLONE_*` and `AWS_*` (AWS_CA_BUNDLE, for
/// one, makes rclone refuse to build its HTTP client, and the endpoint is plain HTTP), with
/// rclone's remote `bench:` defined by variables alone (no config file is read), and `C`
/// decimals.
#[derive(Debug, Clone, Default)]
pub struct ChildEnv {
    set: Vec<(String, String)>,
    remove: Vec<OsString>,
}

impl ChildEnv {
    pub fn new(s3_url: &str, rclone_conf: &Path) -> Self {
        let remove = std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| {
                k.to_str()
                    .is_some_and(|k| k.starts_with("RCLONE_") || k.starts_with("AWS_"))
            })
            .collect();
        let set = [
            ("LC_ALL", "C".to_owned()),
            ("RCLONE_CONFIG", rclone_conf.display().to_string()),
            ("RCLONE_CONFIG_BENCH_TYPE", "s3".into()),
            ("RCLONE_CONFIG_BENCH_PROVIDER", "Other".into()),
            ("RCLONE_CONFIG_BENCH_ENDPOINT", s3_url.into()),
            ("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true".into()),
            ("RCLONE_CONFIG_BENCH_REGION", "auto".into()),
            ("RCLONE_CONFIG_BENCH_NO_CHECK_BUCKET", "true".into()),
            ("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self { set, remove }
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for k in &self.remove {
            cmd.env_remove(k);
        }
        cmd.envs(self.set.iter().map(|(k, v)| (k, v)));
        cmd.env("LC_ALL", "C");
        cmd
    }
}

/// The bench's state once set up.
pub struct Harness {
    pub s: Settings,
    /// The repository (the working directory).
    pub root: PathBuf,
    /// target/release.
    pub bin: PathBuf,
    pub work: PathBuf,
    /// The fresh filesystem the archive and rclone's destination live on (or `work`).
    pub disk: PathBuf,
    pub rec: Recorder,
    pub clean: Shared,
    pub pg: Postgres,
    pub db: Db,
    pub s3: S3Server,
    pub s3_url: String,
    pub s3_root: PathBuf,
    pub env: ChildEnv,
    pub nginx: PathBuf,
    pub min_ffprobe: String,
    pub demux_ffprobe: String,
    pub min_ffprobe_build: String,
    pub video_bytes: u64,
    pub small_r2_fps: Option<String>,
    pub serve_dir: PathBuf,
    /// Wall and CPU seconds of the command timed last.
    pub t_secs: f64,
    pub t_cpu: f64,
}

/// What set-up found before the S3 server and database started.
pub struct Prelude {
    pub root: PathBuf,
    pub work: PathBuf,
    pub disk: PathBuf,
    pub looped: bool,
    pub nginx: PathBuf,
    pub rec: Recorder,
}

impl Harness {
    pub fn logs(&self) -> PathBuf {
        self.work.join("logs")
    }

    pub fn archive(&self) -> PathBuf {
        self.disk.join("archive")
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = self.env.command(program);
        cmd.current_dir(&self.root);
        cmd
    }

    pub fn record(&self, key: &str, subject: &str, run: impl Display, value: impl Display) -> Result<()> {
        self.rec.record(key, subject, run, value)
    }

    pub fn meta(&self, key: &str, value: impl Display) -> Result<()> {
        self.rec.meta(key, value)
    }

    /// r2-sync's environment, as in tests/it/common's `Rig::env`; nothing else is inherited.
    pub fn r2env(&self) -> Vec<String> {
        [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("DB_HOST", self.pg.host.clone()),
            ("DB_PORT", self.pg.port.to_string()),
            ("DB_NAME", self.db.name.clone()),
            ("DB_USER", self.pg.user.clone()),
            ("DB_SSLMODE", "disable".into()),
            ("R2_ENDPOINT", self.s3_url.clone()),
            ("R2_ACCESS_KEY", ACCESS_KEY.into()),
            ("R2_SECRET_KEY", SECRET_KEY.into()),
            ("R2_BUCKET", BUCKET.into()),
            ("ARCHIVE_DIR", self.archive().display().to_string()),
            ("STATE_DIR", self.work.join("state").display().to_string()),
            ("UNRAID_TUNNEL_SECRET", TUNNEL_SECRET.into()),
            ("SERVER_PORT", "0".into()),
            ("HEALTH_PORT", "0".into()),
            ("LOG_LEVEL", "info".into()),
            ("FFPROBE_PATH", self.min_ffprobe.clone()),
            ("FFPROBE_DEMUX_PATH", self.demux_ffprobe.clone()),
        ]
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
    }

    /// `env -i <r2-sync's environment> <overrides> [wrap...] target/release/r2-sync <args>`.
    pub fn r2_argv(&self, overrides: &[String], wrap: &[String], args: &[&str]) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["env".into(), "-i".into()];
        argv.extend(self.r2env().into_iter().map(OsString::from));
        argv.extend(overrides.iter().map(OsString::from));
        argv.extend(wrap.iter().map(OsString::from));
        argv.push(self.bin.join("r2-sync").into());
        argv.extend(args.iter().map(OsString::from));
        argv
    }

    /// A command from an argv.
    pub fn argv_command(&self, argv: &[OsString]) -> Command {
        let mut cmd = self.command(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// Starts a background process, recorded for clean-up.
    pub fn spawn(&self, cmd: &mut Command, what: &str) -> Result<std::process::Child> {
        let child = cmd.spawn().map_err(io(format!("start {what}")))?;
        self.clean.process(child.id());
        Ok(child)
    }

    pub fn s3_cpu(&self) -> f64 {
        procfs::cpu_secs(self.s3.pid())
    }

    /// Body bytes the S3 server has sent in answer to GETs so far.
    pub fn s3_sent(&self) -> Result<u64> {
        Ok(self.s3.get_body_bytes()?)
    }

    /// Runs `argv` under GNU time after flushing earlier runs' dirty pages (so their writeback
    /// does not land on this run); records wall seconds, CPU seconds, peak RSS and the S3
    /// server's and PostgreSQL's CPU seconds; sets `t_secs` and `t_cpu`. Fails loudly. CPU
    /// seconds are GNU time's user + sys of the command and every descendant it waited for
    /// (r2-sync's ffprobes, the bash loop's rclone, ffprobe, psql, jq and mv); peak RSS is its
    /// "Maximum resident set size": the largest one process of that tree, not a sum.
    pub fn timed(&mut self, section: &str, subject: &str, run: u32, argv: &[OsString]) -> Result<()> {
        let label = format!("{section}-{subject}-{run}");
        let tf = self.logs().join(format!("{label}.time"));
        let log = self.logs().join(format!("{label}.log"));
        sync_disks();
        let (c0, p0) = (self.s3_cpu(), procfs::postgres_cpu_secs());
        let t0 = Instant::now();
        let (out, err) = log_file(&log)?;
        let st = self
            .command("/usr/bin/time")
            .arg("-v")
            .arg("-o")
            .arg(&tf)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(io("run /usr/bin/time"))?;
        let secs = t0.elapsed().as_secs_f64();
        if !st.success() {
            eprintln!("{}", tail(&log, 20));
            fail!(
                "{label} failed with exit status {} (its last log lines are above)",
                st.code().unwrap_or(-1)
            );
        }
        let (c1, p1) = (self.s3_cpu(), procfs::postgres_cpu_secs());
        let t = procfs::read_time_report(&tf)?;
        // The rounded figures the records hold are the ones later figures derive from.
        self.t_secs = calc(secs).parse().unwrap_or(secs);
        self.t_cpu = format!("{:.2}", t.cpu_secs).parse().unwrap_or(t.cpu_secs);
        self.record(&format!("{section}.wall_s"), subject, run, calc(secs))?;
        self.record(&format!("{section}.cpu_s"), subject, run, format!("{:.2}", t.cpu_secs))?;
        self.record(
            &format!("{section}.rss_mib"),
            subject,
            run,
            calc(t.max_rss_kb as f64 / 1024.0),
        )?;
        self.record(&format!("{section}.s3cpu_s"), subject, run, calc(c1 - c0))?;
        self.record(&format!("{section}.pgcpu_s"), subject, run, calc(p1 - p0))?;
        say(format!(
            "  {label}: {}s, CPU {:.2}s, peak RSS {} MiB",
            calc(secs),
            t.cpu_secs,
            t.max_rss_kb / 1024
        ));
        Ok(())
    }

    /// A clean slate for r2-sync: no rows, no leases, empty archive and state (ledger).
    pub fn reset_r2sync(&self) -> Result<()> {
        self.db
            .exec("TRUNCATE media, audit_logs RESTART IDENTITY; DROP TABLE IF EXISTS r2_sync_leases")?;
        let (archive, state) = (self.archive(), self.work.join("state"));
        discard(&[&archive, &state])?;
        for dir in [&archive, &state] {
            std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        }
        Ok(())
    }

    /// Approved rows for keys PREFIX/f0001.EXT…, with the size the backend records at upload.
    pub fn insert_rows(&self, prefix: &str, count: u32, ext: &str, content_type: &str, size: u64) -> Result<()> {
        self.db.exec(&format!(
            "INSERT INTO media (user_id, title, original_filename, content_type, file_size, r2_key, status,
                   storage_location, approved_at)
               SELECT 7, 'bench', format('f%s.{ext}', lpad(g::text, 4, '0')), '{content_type}', {size},
                      format('{prefix}/f%s.{ext}', lpad(g::text, 4, '0')), 'approved', 'r2', now()
               FROM generate_series(1, {count}) g"
        ))?;
        Ok(())
    }

    /// Puts what is missing under bucket/PREFIX (r2-sync deletes what it archived; rclone
    /// leaves the objects). Untimed. --size-only: the sources never change. Remote paths end
    /// in '/' everywhere: without it rclone first HEADs `media/PREFIX` to see whether it is a
    /// file, the test server answers 500 (s3s-fs finds a directory there), and rclone's retries
    /// add ~90 s to every command.
    pub fn upload(&self, dir: &Path, prefix: &str) -> Result<()> {
        let st = self
            .command("rclone")
            .arg("copy")
            .arg(dir)
            .arg(format!("bench:{BUCKET}/{prefix}/"))
            .args(["--size-only", "--transfers", "8", "--checkers", "16"])
            .status()
            .map_err(io("run rclone"))?;
        if !st.success() {
            fail!("uploading {} to the test S3 server failed", dir.display());
        }
        Ok(())
    }

    /// One timed `r2-sync sync --once` (with BENCH_R2_ENV and BENCH_R2_WRAP), checked.
    pub fn r2_sync_pass(
        &mut self,
        section: &str,
        subject: &str,
        run: u32,
        expected: u32,
        env: &[String],
    ) -> Result<()> {
        let mut overrides = env.to_vec();
        overrides.extend(self.s.r2_env.split_whitespace().map(str::to_owned));
        let wrap: Vec<String> = self.s.r2_wrap.split_whitespace().map(str::to_owned).collect();
        let argv = self.r2_argv(&overrides, &wrap, &["sync", "--once"]);
        self.timed(section, subject, run, &argv)?;
        self.verify_synced(section, "r2-sync", expected)
    }

    /// One timed pass of the bash + rclone loop (bench/bash-loop.sh --once) over the rows in
    /// the database, with r2-sync's settings (the same variables) and `env`, checked as
    /// r2-sync's passes are.
    pub fn bash_loop_pass(&mut self, section: &str, run: u32, expected: u32, env: &[String]) -> Result<()> {
        let mut overrides = vec![format!("RCLONE_CONFIG={}", self.work.join("rclone.conf").display())];
        overrides.extend(env.iter().cloned());
        let mut argv: Vec<OsString> = vec!["env".into(), "-i".into()];
        argv.extend(self.r2env().into_iter().map(OsString::from));
        argv.extend(overrides.into_iter().map(OsString::from));
        argv.push(self.root.join("bench/bash-loop.sh").into());
        argv.push("--once".into());
        self.timed(section, "bashloop", run, &argv)?;
        self.verify_synced(section, "the bash loop", expected)
    }

    /// After a sync pass over EXPECTED approved rows (the only rows in the database), every
    /// row is archived with its one media.archived audit row, its file and sidecar are in the
    /// archive, its object is gone from the bucket.
    pub fn verify_synced(&self, section: &str, who: &str, expected: u32) -> Result<()> {
        let counts = self.db.rows(
            "SELECT (SELECT count(*) FROM media WHERE status = 'archived'),
                    (SELECT count(*) FROM media WHERE status <> 'archived'),
                    (SELECT count(DISTINCT entity_id) FROM audit_logs
                     WHERE action = 'media.archived' AND entity_type = 'media'
                       AND entity_id IN (SELECT id FROM media WHERE status = 'archived'))",
        )?;
        let counts = counts.into_iter().next().unwrap_or_default();
        let want = [expected.to_string(), "0".into(), expected.to_string()];
        if counts != want {
            let c = |i: usize| counts.get(i).cloned().unwrap_or_default();
            fail!(
                "{section}: {who} left {} of {expected} rows archived, {} not archived, {} with a media.archived audit row (log: {})",
                c(0),
                c(1),
                c(2),
                self.logs().display()
            );
        }
        let rows: Vec<ArchivedRow> = self
            .db
            .rows("SELECT id, archive_path, file_size, r2_key FROM media WHERE status = 'archived'")?
            .into_iter()
            .map(|r| {
                let f = |i: usize| r.get(i).cloned().unwrap_or_default();
                ArchivedRow {
                    id: f(0),
                    archive_path: f(1),
                    file_size: f(2),
                    r2_key: f(3),
                }
            })
            .collect();
        match verify_archive::verify(&self.archive(), &self.s3_root.join(BUCKET), expected as usize, &rows) {
            Ok(line) => {
                say(format!("  checked: {line}"));
                Ok(())
            }
            Err(e) => fail!("{section}: after {who}: {e}"),
        }
    }

    /// One timed `rclone copy` with default settings.
    pub fn rclone_pass(&mut self, section: &str, run: u32, prefix: &str, expected: u32) -> Result<()> {
        let dest = self.disk.join("dest");
        discard(&[&dest])?;
        let argv: Vec<OsString> = vec![
            "rclone".into(),
            "copy".into(),
            format!("bench:{BUCKET}/{prefix}/").into(),
            dest.clone().into(),
        ];
        self.timed(section, "rclone", run, &argv)?;
        let got = count_files(&dest);
        if got != u64::from(expected) {
            fail!("{section}: rclone copied {got} of {expected} files");
        }
        Ok(())
    }
}

/// Regular files under `dir`, at any depth.
pub fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// Set-up up to the S3 server: tools, release build, work directory, fresh filesystem.
pub fn prelude(s: &Settings, clean: &Shared) -> Result<Prelude> {
    // The repository this harness was built from; relative paths (BENCH_OUT) are its.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_owned();
    std::env::set_current_dir(&root).map_err(io(format!("cd {}", root.display())))?;
    need_tools(s, &root)?;
    if !s.skip_build {
        say("building release binaries");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        status(
            Command::new(&cargo).args([
                "build",
                "--locked",
                "--release",
                "-p",
                "r2-sync",
                "-p",
                "r2-sync-test-s3",
                "--bins",
                "--examples",
            ]),
            "the release build",
        )?;
        if s.wants("ledger") {
            status(
                Command::new(&cargo).args([
                    "build",
                    "--locked",
                    "--release",
                    "-p",
                    "r2-sync-state",
                    "--example",
                    "ledger_scale",
                ]),
                "the release build",
            )?;
        }
    }
    let bin = root.join("target/release");
    for b in ["r2-sync", "r2-sync-test-s3"] {
        if !bin.join(b).is_file() {
            fail!("no release binary {}", bin.join(b).display());
        }
    }
    if s.wants("ledger") && !bin.join("examples/ledger_scale").is_file() {
        fail!("no release binary {}", bin.join("examples/ledger_scale").display());
    }
    let tmp = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let work = tempfile::Builder::new()
        .prefix("r2-sync-bench.")
        .tempdir_in(&tmp)
        .map_err(io(format!("make the work directory in {}", tmp.display())))?
        .keep();
    clean.dir(work.clone());
    std::fs::create_dir_all(work.join("logs")).map_err(io("create the logs directory"))?;
    let rec = Recorder {
        results: work.join("results.tsv"),
        meta: work.join("meta.tsv"),
    };
    for p in [&rec.results, &rec.meta] {
        File::create(p).map_err(io(format!("create {}", p.display())))?;
    }
    let (disk, looped) = mount_disk(s, &work, clean)?;
    let nginx = which("nginx").unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    Ok(Prelude {
        root,
        work,
        disk,
        looped,
        nginx,
        rec,
    })
}

/// The rest of the set-up: minimal ffprobes, test S3 server, scratch database, r2-sync reset.
pub fn start(s: Settings, p: Prelude, clean: Shared, handle: Handle) -> Result<Harness> {
    let (min_ffprobe, demux_ffprobe, min_ffprobe_build) = min_ffprobe(&p.root)?;
    // The bucket lives in /dev/shm when it has room: R2 is remote, so neither its storage nor
    // the deletes r2-sync sends it should load the archive's disk.
    let mut s3_root = p.work.join("s3");
    let shm_kb = rustix::fs::statvfs("/dev/shm")
        .map(|v| v.f_bavail * v.f_frsize / 1024)
        .unwrap_or(0);
    if shm_kb > (s.big_mib + s.serve_mib + 4096) * 1024 {
        s3_root = tempfile::Builder::new()
            .prefix("r2-sync-bench-s3.")
            .tempdir_in("/dev/shm")
            .map_err(io("make the bucket's folder in /dev/shm"))?
            .keep();
        clean.dir(s3_root.clone());
    }
    std::fs::create_dir_all(s3_root.join(BUCKET)).map_err(io("create the bucket"))?;
    let bin = p.root.join("target/release");
    let s3_err_path = p.work.join("s3.err");
    let s3_err = File::create(&s3_err_path).map_err(io("create s3.err"))?;
    let keys = Keys {
        access: ACCESS_KEY,
        secret: SECRET_KEY,
    };
    let s3 = match S3Server::start(&bin.join("r2-sync-test-s3"), &s3_root, keys, Stdio::from(s3_err)) {
        Ok(s3) => s3,
        Err(e) => fail!(
            "the test S3 server exited: {e}: {}",
            std::fs::read_to_string(&s3_err_path).unwrap_or_default().trim()
        ),
    };
    clean.process(s3.pid());
    let s3_url = s3.endpoint().to_owned();
    let conf = p.work.join("rclone.conf");
    File::create(&conf).map_err(io("create rclone.conf"))?;
    let env = ChildEnv::new(&s3_url, &conf);

    let pg = Postgres::from_env();
    let name = format!("r2sync_bench_{}", std::process::id());
    clean.database(&name);
    handle.block_on(pg.create_scratch(&name, ""))?;
    let db = Db::connect(handle.clone(), &pg, &name)?;

    let h = Harness {
        s,
        bin,
        root: p.root,
        work: p.work,
        disk: p.disk,
        rec: p.rec,
        clean,
        pg,
        db,
        s3,
        s3_url,
        s3_root,
        env,
        nginx: p.nginx,
        min_ffprobe,
        demux_ffprobe,
        min_ffprobe_build,
        video_bytes: 0,
        small_r2_fps: None,
        serve_dir: PathBuf::new(),
        t_secs: 0.0,
        t_cpu: 0.0,
    };
    h.reset_r2sync()?;
    Ok(h)
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// Installs what the chosen rows need and is missing (scripts/lib.sh's installers, shared with
/// the test and demo scripts), and starts the local PostgreSQL when it is down.
fn need_tools(s: &Settings, root: &Path) -> Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    if ["videos", "big", "small", "resume", "serve", "context"]
        .iter()
        .any(|r| s.wants(r))
        && which("rclone").is_none()
    {
        missing.push("rclone");
    }
    // The bash loop (rows 1 and 3) runs Debian's full ffprobe and writes its sidecars with jq.
    if (s.wants("videos") || s.wants("small")) && which("jq").is_none() {
        missing.push("jq");
    }
    if !Path::new("/usr/bin/ffprobe").is_file() {
        missing.push("ffmpeg");
    }
    if s.wants("serve") {
        if which("nginx").is_none() && !Path::new("/usr/sbin/nginx").is_file() {
            missing.push("nginx-light");
        }
        if which("wrk").is_none() {
            missing.push("wrk");
        }
    }
    if which("curl").is_none() {
        missing.push("curl");
    }
    if !Path::new("/usr/bin/time").is_file() {
        // GNU time, for peak RSS (-v)
        missing.push("time");
    }
    if !missing.is_empty() {
        say(format!("installing {}", missing.join(" ")));
    }
    status(
        Command::new("bash")
            .current_dir(root)
            .arg("-c")
            .arg("set -e; source scripts/lib.sh; need_ffmpeg; need_postgres; [ $# -eq 0 ] || apt_install \"$@\"")
            .arg("bench")
            .args(&missing),
        "installing the bench's tools (scripts/lib.sh)",
    )
}

/// The archive and rclone's destination share a filesystem made fresh for this run, in a
/// sparse image on the work directory's disk (loop device, direct I/O so nothing is cached
/// twice): the NAS's own kind (Unraid formats its array XFS), and no earlier work's deleted
/// inodes or dirty metadata on it. BENCH_FS=none uses the work directory as it is.
fn mount_disk(s: &Settings, work: &Path, clean: &Shared) -> Result<(PathBuf, bool)> {
    let fs = s.fs.as_str();
    if fs == "none" {
        return Ok((work.to_owned(), false));
    }
    let mkfs = format!("mkfs.{fs}");
    if which(&mkfs).is_none()
        && !Path::new("/usr/sbin").join(&mkfs).is_file()
        && !Path::new("/sbin").join(&mkfs).is_file()
    {
        let package = if fs == "xfs" { "xfsprogs" } else { "e2fsprogs" };
        status(
            Command::new("bash")
                .arg("-c")
                .arg("source scripts/lib.sh; apt_install \"$1\"")
                .arg("bench")
                .arg(package),
            &format!("installing {package}"),
        )?;
    }
    let image = work.join("disk.img");
    File::create(&image)
        .and_then(|f| f.set_len(64 << 30))
        .map_err(io(format!("make the sparse image {}", image.display())))?;
    let made = Command::new(&mkfs)
        .arg("-q")
        .arg(&image)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io(format!("run {mkfs}")))?;
    if !made.success() {
        fail!("{mkfs} failed on {}", image.display());
    }
    let device = match output(
        Command::new("losetup")
            .args(["--direct-io=on", "--show", "-f"])
            .arg(&image),
        "losetup",
    ) {
        Ok(d) if !d.is_empty() => d,
        _ => fail!("no loop device (BENCH_FS=none skips this)"),
    };
    let dir = work.join("disk");
    std::fs::create_dir_all(&dir).map_err(io("create the mount point"))?;
    clean.mount(Mount {
        dir: dir.clone(),
        device: device.clone(),
    });
    if !Command::new("mount")
        .arg(&device)
        .arg(&dir)
        .status()
        .map_err(io("run mount"))?
        .success()
    {
        fail!("cannot mount {device} (BENCH_FS=none skips this)");
    }
    Ok((dir, true))
}

/// The minimal static ffprobes r2-sync's image ships (scripts/build-ffprobe.sh prints each
/// one's path last; a cached build is instant): the full minimal build, ffprobe-demux (which
/// r2-sync asks first: it settles MP4/MOV alone), and "Debian ffmpeg <version>, configure
/// options <hash>". Without FFPROBE_PATH r2-sync would run whatever ffprobe PATH finds first:
/// Debian's full one here, which the image does not have.
fn min_ffprobe(root: &Path) -> Result<(String, String, String)> {
    say("the minimal ffprobe (scripts/build-ffprobe.sh; a few minutes when not cached)");
    let build = |args: &[&str], what: &str| -> Result<String> {
        let out = Command::new("./scripts/build-ffprobe.sh")
            .current_dir(root)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .map_err(io(what))?;
        if !out.status.success() {
            fail!("{what} failed");
        }
        let path = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_owned();
        let ok = Command::new(&path)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            fail!("{path} -version failed ({what} printed '{path}')");
        }
        Ok(path)
    };
    let min = build(&[], "scripts/build-ffprobe.sh")?;
    let dir = Path::new(&min).parent().unwrap_or(Path::new(""));
    let first = std::fs::read_to_string(dir.join("BUILD"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let version = first.split(", built in ").next().unwrap_or("").to_owned();
    let key = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let demux = build(&["--demux-only"], "scripts/build-ffprobe.sh --demux-only")?;
    Ok((min, demux, format!("{version}, configure options {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_rotate_the_order() {
        let items = ["a", "b", "c"];
        assert_eq!(rotate(1, &items), ["a", "b", "c"]);
        assert_eq!(rotate(2, &items), ["b", "c", "a"]);
        assert_eq!(rotate(4, &items), ["a", "b", "c"]);
    }

    #[test]
    fn the_last_log_message_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, "x\n{\"level\":\"error\",\"msg\":\"pass failed\",\"n\":1}\n").unwrap();
        assert_eq!(last_msg(&log), "pass failed");
        std::fs::write(&log, format!("{}\n", "y".repeat(150))).unwrap();
        assert_eq!(last_msg(&log), "y".repeat(100));
    }

    #[test]
    fn discarded_folders_move_to_trash() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("archive");
        std::fs::create_dir_all(a.join("x")).unwrap();
        discard(&[&a, &dir.path().join("missing")]).unwrap();
        assert!(!a.exists());
        let trash: Vec<_> = std::fs::read_dir(dir.path().join("trash")).unwrap().flatten().collect();
        assert_eq!(trash.len(), 1);
        assert!(trash[0].path().join("archive/x").is_dir());
        assert_eq!(count_files(dir.path()), 0);
    }
}
