//! The run's description: the machine (CPU, memory, kernel, disk), the tools' versions, and
//! the notes under the tables.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{Harness, Recorder, Result};
use crate::serve::client_cpus_now;
use crate::settings::Settings;

/// A command's first line of output (standard output, or standard error when `stderr`), "" if
/// it cannot run.
fn first_line(cmd: &mut Command, stderr: bool) -> String {
    let Ok(out) = cmd.stdin(Stdio::null()).output() else {
        return String::new();
    };
    let text = if stderr { out.stderr } else { out.stdout };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("")
        .trim_end()
        .to_owned()
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `model name` of /proc/cpuinfo.
pub fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(": ")
                .map(|(_, v)| v.to_owned())
        })
        .unwrap_or_default()
}

/// MemTotal of /proc/meminfo in GiB, one decimal.
pub fn mem_total(meminfo: &str) -> String {
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    format!("{:.1} GiB", kb / 1_048_576.0)
}

/// The disk the work directory is on: device, filesystem, model, rotational, size.
fn disk(work: &Path, disk: &Path, looped: bool) -> String {
    let line = first_line(
        Command::new("findmnt").args(["-no", "SOURCE,FSTYPE", "-T"]).arg(work),
        false,
    );
    let mut parts = line.split_whitespace();
    let (src, fstype) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut dev = first_line(Command::new("lsblk").args(["-no", "PKNAME"]).arg(&src), false)
        .trim()
        .to_owned();
    if dev.is_empty() {
        dev = Path::new(&src)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    let rota = read(format!("/sys/block/{dev}/queue/rotational")).trim().to_owned();
    let rota = if rota.is_empty() { "?".to_owned() } else { rota };
    let model = read(format!("/sys/block/{dev}/device/model"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let size = {
        let out = Command::new("df").args(["-h", "--output=size"]).arg(work).output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
    };
    let model = if model.is_empty() {
        String::new()
    } else {
        format!(", {model}")
    };
    let rotational = if rota == "0" {
        "non-rotational".to_owned()
    } else {
        format!("rotational={rota}")
    };
    let fresh = if looped {
        let fs = first_line(Command::new("findmnt").args(["-no", "FSTYPE", "-T"]).arg(disk), false);
        format!("; the archive and rclone's destination on a fresh {fs} in a loop-mounted image on it (direct I/O)")
    } else {
        String::new()
    };
    format!("{src} ({fstype}{model}, {rotational}), {size} — virtual disk unless a model is shown{fresh}")
}

/// The versions of the tools this run uses.
fn tool_versions(root: &Path, nginx: &Path, postgres_version: &str) -> String {
    let r2 = first_line(
        Command::new(root.join("target/release/r2-sync")).arg("--version"),
        false,
    );
    let r2 = r2.split_whitespace().nth(1).unwrap_or("").to_owned();
    let head = first_line(
        Command::new("git")
            .current_dir(root)
            .args(["rev-parse", "--short", "HEAD"]),
        false,
    );
    let dirty = !Command::new("git")
        .current_dir(root)
        .args(["diff", "--quiet", "HEAD", "--", "src", "state"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut v = format!("r2-sync {r2} ({head}{})", if dirty { "+uncommitted" } else { "" });
    if crate::harness::which("rclone").is_some() {
        v += &format!(", {}", first_line(Command::new("rclone").arg("version"), false));
    }
    if nginx.is_file() {
        let line = first_line(Command::new(nginx).arg("-v"), true);
        let line = line.rsplit_once(": ").map_or(line.as_str(), |(_, v)| v).to_owned();
        v += &format!(", {line}");
    }
    if crate::harness::which("wrk").is_some() {
        let mut line = first_line(Command::new("wrk").arg("-v"), false);
        if line.is_empty() {
            line = first_line(Command::new("wrk").arg("-v"), true);
        }
        let two: Vec<&str> = line.split(' ').take(2).collect();
        v += &format!(", {}", two.join(" "));
    }
    if crate::harness::which("jq").is_some() {
        v += &format!(", {}", first_line(Command::new("jq").arg("--version"), false));
    }
    let ffprobe = first_line(Command::new("/usr/bin/ffprobe").arg("-version"), false);
    let ffprobe = ffprobe.split(" Copyright").next().unwrap_or("");
    v += &format!(", Debian's {ffprobe}");
    let pg = postgres_version.split(" (").next().unwrap_or("");
    v += &format!(", PostgreSQL {pg}");
    v
}

/// The number of CPUs (`nproc`).
pub fn nproc() -> String {
    first_line(&mut Command::new("nproc"), false)
}

/// The machine's description, first in the meta file.
pub fn describe(
    rec: &Recorder,
    s: &Settings,
    (root, work, disk_dir, looped, nginx): (&Path, &Path, &Path, bool, &Path),
    postgres_version: &str,
) -> Result<()> {
    rec.meta("date", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"))?;
    rec.meta("runs", s.runs)?;
    if !s.r2_env.is_empty() || !s.r2_wrap.is_empty() {
        rec.meta(
            "note00",
            format!(
                "This run set BENCH_R2_ENV='{}' BENCH_R2_WRAP='{}' for every timed r2-sync pass.",
                s.r2_env, s.r2_wrap
            ),
        )?;
    }
    rec.meta("nproc", nproc())?;
    rec.meta("cpu", cpu_model(&read("/proc/cpuinfo")))?;
    rec.meta("kernel", first_line(Command::new("uname").arg("-srm"), false))?;
    let load: Vec<String> = read("/proc/loadavg").split(' ').take(3).map(str::to_owned).collect();
    rec.meta("load", load.join(" "))?;
    rec.meta("mem", mem_total(&read("/proc/meminfo")))?;
    rec.meta("disk", disk(work, disk_dir, looped))?;
    rec.meta("versions", tool_versions(root, nginx, postgres_version))
}

impl Harness {
    /// The notes under the tables.
    pub fn notes(&self) -> Result<()> {
        let s = &self.s;
        let rel = |p: &str| {
            let root = format!("{}/", self.root.display());
            p.strip_prefix(&root).unwrap_or(p).to_owned()
        };
        self.meta("note01", "Sync rows: the test S3 server (`tests/s3-server`, release build) on loopback, its objects in the page cache (RAM ≫ data). Timed: r2-sync's whole `sync --once` process (start-up, PostgreSQL claim, HEAD or a first GET that stands in for it, GET, MD5 + SHA-256, ffprobe, durable writes, rename, sidecar, record, DELETE) vs `rclone copy bench:media/<prefix> <dir>` alone with default settings (--transfers 4, --checkers 8, multi-thread streams 4 above 250 MiB; MD5 checked).")?;
        self.meta("note02", "rclone does not fsync what it writes; r2-sync makes every 64 MiB segment, the file, the rename and the sidecar durable (one syncfs shared by the files finishing together where the filesystem honours it: ARCHIVE_SYNCFS). `sync` runs untimed before every timed run so earlier writeback does not land on it. Rows carry file_size, as the backend records it at upload.")?;
        self.meta("note03", "Objects are re-uploaded (untimed, rclone) before each r2-sync run, since r2-sync deletes what it archived; rows, leases, archive and state are reset.")?;
        self.meta("note04", format!("The {videos} videos are one {bytes}-byte 720p x264 file (10 s, noise so it stays at 40 Mbit/s) under {videos} keys; r2-sync validates each with the two minimal static ffprobes its image ships, not Debian's: ffprobe-demux first (FFPROBE_DEMUX_PATH={demux}, scripts/build-ffprobe.sh --demux-only), which settles these MP4s alone, and the full minimal build where it cannot (FFPROBE_PATH={min}). Throughput = bytes / wall seconds.",
            videos = s.videos, bytes = self.video_bytes, demux = rel(&self.demux_ffprobe), min = rel(&self.min_ffprobe)))?;
        self.meta("note05", "Row 4: r2-sync is killed when `<ARCHIVE_DIR>/.r2-sync-tmp/<id>.part` reaches 50 %; rclone when the S3 server's GET /_stats counter reaches 50 % (its multi-thread download writes into a preallocated file, so file size says nothing). Re-downloaded = bytes the server sent over both runs − object size. 50 % of the object is a boundary of r2-sync's 64 MiB checkpoint segments, and the kill lands before that segment's checkpoint: this is r2-sync's worst case (one whole segment, plus bytes in flight).")?;
        self.meta("note06", format!("Row 5 (when measured): nginx ({nginx}) with sendfile on (its config is in the serving section), over the same directory as `r2-sync serve`; wrk -t2 -c64 -d{wrk}s with bench/range.lua; r2-sync URLs carry ?token= from `r2-sync token`. The file is one r2-sync archived itself (so its ledger answers each request's lookup, as for every file it archives), served by both from the same path, in the page cache (warmed first). Both servers pinned to CPUs {cpus} (taskset; nginx with one worker per CPU there), the client to CPUs {client}; {runs} runs of each pair, alternating.",
            nginx = self.nginx.display(), wrk = s.wrk_secs, cpus = s.serve_cpus, client = client_cpus_now(s), runs = s.serve_runs))?;
        self.meta("note07", "Row 6's S3-server rows are the ceiling every sync row shares: when both tools come close to it, the sync ratios measure the server more than the tools (see the S3 server CPU column).")?;
        let bucket = if self.s3_root.starts_with("/dev/shm") {
            "in /dev/shm (tmpfs), since R2's storage is not the NAS's disk"
        } else {
            "on the archive's disk (/dev/shm had no room)"
        };
        self.meta("note09", format!("The bucket's objects: {bucket}. Earlier runs' output is moved aside, never deleted, until the end: on ext4 without a journal (this machine's disk) a mass delete makes every file created in the next minute (six while the inode table is dirty) scan past the freed inodes, which charged one tool for the other's clean-up; the fresh filesystem (BENCH_FS) also keeps the work of earlier benchmarks and test runs on the disk from landing on these rows."))?;
        self.meta("note10", "The bash + rclone loop (rows 1 and 3, bench/bash-loop.sh): the service r2-sync replaces, which users run today. Its script is not available; it is rebuilt from the workflow of the original plan (`Query approved → Download from R2 → Validate (ffprobe) → Move to archive → Create JSON sidecar → Update DB → Delete from R2`) and its settings (the same DB_*, R2_*, BATCH_SIZE, ARCHIVE_DIR r2-sync reads): one psql SELECT of the approved rows, then per row, one file at a time (the plan has no concurrency setting; SYNC_CONCURRENCY is new with the rewrite): `rclone copyto` into a temp file on the archive's filesystem, Debian's full `/usr/bin/ffprobe` with r2-sync's arguments (a rejected file is left in the bucket, its row approved; row 3: VALIDATE_MEDIA=false, as for r2-sync), `mv` to <yyyy>/<mm>/<id>-<name>, a `jq` sidecar (row, size, ffprobe's output), one psql statement updating the row to archived with its media.archived audit row, `rclone deletefile`. Nothing fsynced. Timed as one `bench/bash-loop.sh --once` pass, on the same rows and re-uploaded objects as r2-sync's runs; after each pass of either, the bench checks every row archived with its audit row, file and sidecar in the archive, object gone from the bucket (bench/src/verify_archive.rs).")?;
        self.meta("note11", format!("CPU-s: GNU time's user + sys of the timed command and every descendant it waited for (r2-sync with its ffprobes; the bash loop with its rclone, ffprobe, psql, jq and mv processes). The S3 server's and PostgreSQL's CPU are outside it (Resources table; the bash loop's psql connects anew for each row, which costs PostgreSQL a backend each). Peak RSS: GNU time's maximum resident set size, the largest single process of the tree, not their sum. CPU-s per GB: that CPU-s over the bytes archived (rclone: copied), 10^9 bytes a GB. Row 6's ffprobe CPU ms per file: one ffprobe run per video in a bash loop (the loop's own fork cost included), Debian's /usr/bin/ffprobe and the minimal build ({build}) alternating.",
            build = self.min_ffprobe_build))?;
        self.meta("note08", format!("Everything (S3 server, PostgreSQL, the tool measured, the client) shares the same {} cores, with other work running on the machine: absolute numbers are noisy; the ratios are the point.", nproc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_give_model_and_memory() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC\nflags: x\n"),
            "AMD EPYC"
        );
        assert_eq!(mem_total("MemTotal:       24641320 kB\n"), "23.5 GiB");
    }
}
