//! Rows 1 to 3 and their context: sync many videos, one big object, many small objects, each
//! with r2-sync, rclone and (rows 1 and 3) the bash + rclone loop; and in the same minutes, what
//! r2-sync's mandated parts cost alone.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::file_floor::file_floor;
use crate::harness::{calc, discard, fail, io, rotate, say, sync_disks, Harness, Result, BUCKET};

/// `n` random bytes into `path`.
pub fn random_file(path: &Path, n: u64) -> Result<()> {
    let mut out = File::create(path).map_err(io(format!("create {}", path.display())))?;
    let mut random = File::open("/dev/urandom").map_err(io("open /dev/urandom"))?.take(n);
    std::io::copy(&mut random, &mut out).map_err(io(format!("write {}", path.display())))?;
    Ok(())
}

/// The files of `dir` whose names end with `ext`, sorted (a shell glob's order).
pub fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(ext)))
        .collect();
    files.sort();
    files
}

/// The subjects, and the bash loop too in the first BENCH_LOOP_RUNS runs.
pub fn with_loop(run: u32, loop_runs: u32, subjects: &[&'static str]) -> Vec<&'static str> {
    let mut all = subjects.to_vec();
    if run <= loop_runs {
        all.push("bashloop");
    }
    all
}

impl Harness {
    fn src(&self, what: &str) -> PathBuf {
        self.work.join("src").join(what)
    }

    /// One ~50 MB video (10 s of 720p testsrc with noise, so x264 cannot compress it below
    /// 40 Mbit/s), hard-linked BENCH_VIDEOS times under different names.
    pub fn make_videos(&mut self) -> Result<()> {
        let dir = self.src("videos");
        std::fs::create_dir_all(&dir).map_err(io("create the videos' folder"))?;
        let one = self.work.join("src/one.mp4");
        let made = self
            .command("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc=duration=10:size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=10"])
            .args([
                "-vf",
                "noise=alls=30:allf=t+u",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
            ])
            .args([
                "-b:v",
                "40M",
                "-maxrate",
                "40M",
                "-bufsize",
                "40M",
                "-c:a",
                "aac",
                "-shortest",
            ])
            .arg(&one)
            .status()
            .map_err(io("run ffmpeg"))?;
        if !made.success() {
            fail!("ffmpeg could not generate the benchmark video");
        }
        for i in 1..=self.s.videos {
            let link = dir.join(format!("f{i:04}.mp4"));
            std::fs::hard_link(&one, &link).map_err(io(format!("link {}", link.display())))?;
        }
        self.video_bytes = std::fs::metadata(&one).map_err(io("stat the video"))?.len();
        Ok(())
    }

    pub fn make_big(&self) -> Result<()> {
        let dir = self.src("big");
        std::fs::create_dir_all(&dir).map_err(io("create the big object's folder"))?;
        random_file(&dir.join("f0001.bin"), self.s.big_bytes())
    }

    pub fn make_small(&self) -> Result<()> {
        let dir = self.src("small");
        std::fs::create_dir_all(&dir).map_err(io("create the small objects' folder"))?;
        for i in 1..=self.s.small_files {
            random_file(&dir.join(format!("f{i:04}.bin")), self.s.small_bytes)?;
        }
        Ok(())
    }

    /// files/s and CPU-s per GB archived (or copied, for rclone) of the run timed last.
    fn record_sync(&self, section: &str, subject: &str, run: u32, files: u32, bytes: u64) -> Result<()> {
        self.record(
            &format!("{section}.fps"),
            subject,
            run,
            calc(f64::from(files) / self.t_secs),
        )?;
        self.record(
            &format!("{section}.cpu_per_gb"),
            subject,
            run,
            calc(self.t_cpu / (bytes as f64 / 1e9)),
        )
    }

    /// Row 1: many videos, ffprobe on each (r2-sync's normal work).
    pub fn bench_videos(&mut self) -> Result<()> {
        let (videos, bytes) = (self.s.videos, self.video_bytes);
        say(format!("row 1: {videos} videos of {bytes} bytes"));
        let total = u64::from(videos) * bytes;
        for run in 1..=self.s.runs {
            let subjects = with_loop(run, self.s.loop_runs, &["r2sync_c2", "rclone", "r2sync_c4"]);
            for subject in rotate(run, &subjects) {
                self.upload(&self.src("videos"), "videos")?;
                let batch = format!("BATCH_SIZE={videos}");
                match subject {
                    "rclone" => self.rclone_pass("videos", run, "videos", videos)?,
                    "bashloop" => {
                        self.reset_r2sync()?;
                        self.insert_rows("videos", videos, "mp4", "video/mp4", bytes)?;
                        self.bash_loop_pass("videos", run, videos, &[batch])?;
                    }
                    _ => {
                        self.reset_r2sync()?;
                        self.insert_rows("videos", videos, "mp4", "video/mp4", bytes)?;
                        let mut env = vec![batch];
                        if subject == "r2sync_c4" {
                            env.push("SYNC_CONCURRENCY=4".into());
                        }
                        self.r2_sync_pass("videos", subject, run, videos, &env)?;
                    }
                }
                self.record("videos.mbps", subject, run, calc(total as f64 / self.t_secs / 1e6))?;
                self.record_sync("videos", subject, run, videos, total)?;
            }
            self.videos_floor(run)?;
        }
        Ok(())
    }

    /// Row 1's context, in the same minute as each run of the row: what the contract makes
    /// r2-sync compute for these videos, alone: MD5 + SHA-256 of every byte (examples/
    /// hash_floor.rs, r2-sync's crates) and ffprobe on each file with r2-sync's arguments, by
    /// Debian's full ffprobe (subject ffprobe: what the bash service ran), by the one r2-sync
    /// runs on these MP4s (ffprobe_demux, FFPROBE_DEMUX_PATH: it settles them alone) and by the
    /// minimal full build (ffprobe_min, FFPROBE_PATH: what it runs on other containers),
    /// alternating; their CPU ms per file too.
    fn videos_floor(&mut self, run: u32) -> Result<()> {
        let files = files_with(&self.src("videos"), ".mp4");
        let mut argv: Vec<OsString> = vec![self.bin.join("examples/hash_floor").into()];
        argv.extend(files.iter().map(OsString::from));
        self.timed("videofloor", "hashes", run, &argv)?;
        for subject in rotate(run, &["ffprobe", "ffprobe_demux", "ffprobe_min"]) {
            let probe = match subject {
                "ffprobe" => "/usr/bin/ffprobe".to_owned(),
                "ffprobe_demux" => self.demux_ffprobe.clone(),
                _ => self.min_ffprobe.clone(),
            };
            let mut argv: Vec<OsString> = vec![
                "bash".into(),
                "-c".into(),
                "probe=$1; shift; for f in \"$@\"; do
            \"$probe\" -v error -print_format json -show_format -show_streams -- \"$f\" >/dev/null || exit 1
        done"
                    .into(),
                "_".into(),
                probe.into(),
            ];
            argv.extend(files.iter().map(OsString::from));
            self.timed("videofloor", subject, run, &argv)?;
            let ms = self.t_cpu * 1000.0 / f64::from(self.s.videos);
            self.record("videofloor.ms_per_file", subject, run, calc(ms))?;
        }
        Ok(())
    }

    /// One timed run of SUBJECT (r2sync or bashloop, with ffprobe off since the objects are
    /// not media, or rclone) over the COUNT objects of SIZE bytes under PREFIX.
    fn sync_blobs_once(
        &mut self,
        section: &str,
        prefix: &str,
        count: u32,
        size: u64,
        run: u32,
        subject: &str,
    ) -> Result<()> {
        self.upload(&self.src(prefix), prefix)?;
        if subject == "rclone" {
            return self.rclone_pass(section, run, prefix, count);
        }
        self.reset_r2sync()?;
        self.insert_rows(prefix, count, "bin", "application/octet-stream", size)?;
        let env = [format!("BATCH_SIZE={count}"), "VALIDATE_MEDIA=false".to_owned()];
        if subject == "bashloop" {
            self.bash_loop_pass(section, run, count, &env)
        } else {
            self.r2_sync_pass(section, "r2sync", run, count, &env)
        }
    }

    /// Row 2: one big object: throughput and peak memory.
    pub fn bench_big(&mut self) -> Result<()> {
        let big = self.s.big_bytes();
        say(format!("row 2: one object of {big} bytes"));
        for run in 1..=self.s.runs {
            for subject in rotate(run, &["r2sync", "rclone"]) {
                self.sync_blobs_once("big", "big", 1, big, run, subject)?;
                self.record("big.mbps", subject, run, calc(big as f64 / self.t_secs / 1e6))?;
            }
        }
        Ok(())
    }

    /// Row 3: many small objects: per-file overhead.
    pub fn bench_small(&mut self) -> Result<()> {
        let (files, size) = (self.s.small_files, self.s.small_bytes);
        say(format!("row 3: {files} objects of {size} bytes"));
        for run in 1..=self.s.runs {
            let subjects = with_loop(run, self.s.loop_runs, &["r2sync", "rclone"]);
            for subject in rotate(run, &subjects) {
                self.sync_blobs_once("small", "small", files, size, run, subject)?;
                self.record_sync("small", subject, run, files, u64::from(files) * size)?;
                if subject == "r2sync" {
                    self.small_r2_fps = Some(calc(f64::from(files) / self.t_secs));
                }
            }
        }
        Ok(())
    }

    /// Row 3's context: the S3 clients alone, without disk, database or ledger: GETs with MD5
    /// of each body, by r2-sync's own client code (examples/get_floor.rs: the call a pass makes
    /// for a small object, 16 at once as a pass does) and by rclone (md5sum --download, 16 at
    /// once; --disable ListR: the test server answers a listing without delimiter with
    /// nothing). The rows compare CPU time, which is what row 3 runs out of on 2 cores. Then
    /// the ledger alone (examples/ledger_floor.rs), on the same disk as a pass's (STATE_DIR
    /// under the work directory), and the kernel's part of the file work.
    pub fn bench_small_floor(&mut self) -> Result<()> {
        let files = self.s.small_files;
        say(format!("row 3 context: GET + MD5 of {files} objects, no disk"));
        self.upload(&self.src("small"), "small")?;
        for run in 1..=self.s.runs {
            for subject in rotate(run, &["rusts3", "rclone"]) {
                if subject == "rclone" {
                    let argv: Vec<OsString> = [
                        "rclone",
                        "md5sum",
                        "--download",
                        "--checkers",
                        "16",
                        "--disable",
                        "ListR",
                    ]
                    .into_iter()
                    .map(OsString::from)
                    .chain([OsString::from(format!("bench:{BUCKET}/small/"))])
                    .collect();
                    self.timed("smallget", "rclone", run, &argv)?;
                    let log = self.logs().join(format!("smallget-rclone-{run}.log"));
                    let lines = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
                    if lines != files as usize {
                        fail!("row 3 context: rclone md5sum did not hash {files} objects");
                    }
                } else {
                    for (subject, hashes) in [("rusts3_sha", "md5+sha256"), ("rusts3", "md5")] {
                        let count = files.to_string();
                        let argv = self.r2env_argv(
                            &self.bin.join("examples/get_floor"),
                            &["small", "bin", &count, "16", hashes],
                        );
                        self.timed("smallget", subject, run, &argv)?;
                    }
                }
            }
        }
        // The ledger alone, written as a pass writes it for these files, at the pass's pace.
        let fps = self.small_r2_fps.clone().unwrap_or_else(|| "1500".to_owned());
        say(format!(
            "row 3 context: the ledger's writes for {files} files at {fps} files/s"
        ));
        let dir = self.work.join("ledger-floor");
        for run in 1..=self.s.runs {
            std::fs::create_dir_all(&dir).map_err(io("create the ledger floor's folder"))?;
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if f.path().is_file() {
                    std::fs::remove_file(f.path()).map_err(io("empty the ledger floor's folder"))?;
                }
            }
            let argv: Vec<OsString> = vec![
                self.bin.join("examples/ledger_floor").into(),
                dir.clone().into(),
                files.to_string().into(),
                "128".into(),
                fps.clone().into(),
            ];
            self.timed("smallledger", "redb", run, &argv)?;
        }
        // The kernel's part of the file work, on the archive's filesystem.
        say(format!(
            "row 3 context: the kernel's file work for {files} files (file_floor)"
        ));
        let floor = self.disk.join("file-floor");
        for run in 1..=self.s.runs {
            sync_disks();
            let secs = file_floor(&floor, files, self.s.small_bytes as usize)?;
            self.record("filefloor.sys_s", "kernel", run, calc(secs))?;
            say(format!("  filefloor-kernel-{run}: system CPU {}s", calc(secs)));
            discard(&[&floor])?;
        }
        Ok(())
    }

    /// `env -i <r2-sync's environment> PROGRAM ARGS` (the examples read r2-sync's settings).
    pub fn r2env_argv(&self, program: &Path, args: &[&str]) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["env".into(), "-i".into()];
        argv.extend(self.r2env().into_iter().map(OsString::from));
        argv.push(program.into());
        argv.extend(args.iter().map(OsString::from));
        argv
    }

    /// Row 4: bytes fetched again after a SIGKILL at half the big object. The S3 server counts
    /// the body bytes it sends; everything beyond one copy of the object was downloaded twice.
    pub fn bench_resume(&mut self) -> Result<()> {
        let big = self.s.big_bytes();
        say(format!("row 4: SIGKILL at 50 % of {big} bytes, then run again"));
        let half = big / 2;
        let timeout = std::time::Duration::from_secs(600);
        for run in 1..=self.s.runs {
            for subject in rotate(run, &["r2sync", "rclone"]) {
                self.upload(&self.src("big"), "big")?;
                sync_disks();
                let before = self.s3_sent()?;
                let log = self.logs().join(format!("resume-{subject}-{run}.log"));
                let at;
                if subject == "rclone" {
                    let dest = self.disk.join("dest");
                    discard(&[&dest])?;
                    let copy = |h: &Harness| {
                        let mut cmd = h.command("rclone");
                        cmd.arg("copy").arg(format!("bench:{BUCKET}/big/")).arg(&dest);
                        cmd
                    };
                    let (out, err) = crate::harness::log_file(&log)?;
                    let mut child = self.spawn(copy(self).stdout(out).stderr(err), "rclone")?;
                    at = match crate::kill_at::kill_at(child.id(), half, timeout, || {
                        self.s3
                            .get_body_bytes()
                            .map(|n| n.saturating_sub(before))
                            .map_err(|e| e.to_string())
                    }) {
                        Ok(at) => at,
                        Err(e) => fail!("row 4: could not kill rclone at 50 %: {e}"),
                    };
                    // Killed: its exit status says so.
                    drop(child.wait());
                    let (out, err) = crate::harness::append_log(&log)?;
                    if !copy(self).stdout(out).stderr(err).status().is_ok_and(|s| s.success()) {
                        fail!("row 4: rclone's second run failed (see {})", self.logs().display());
                    }
                    if std::fs::metadata(dest.join("f0001.bin")).map(|m| m.len()).ok() != Some(big) {
                        fail!("row 4: rclone's copy is incomplete");
                    }
                } else {
                    self.reset_r2sync()?;
                    self.insert_rows("big", 1, "bin", "application/octet-stream", big)?;
                    // Under the instance's own folder: found as it is polled.
                    let temp = self.archive().join(".r2-sync-tmp");
                    let env = ["BATCH_SIZE=1".to_owned(), "VALIDATE_MEDIA=false".to_owned()];
                    let argv = self.r2_argv(&env, &[], &["sync", "--once"]);
                    let (out, err) = crate::harness::log_file(&log)?;
                    let mut child = self.spawn(self.argv_command(&argv).stdout(out).stderr(err), "r2-sync")?;
                    at = match crate::kill_at::kill_at(child.id(), half, timeout, || {
                        Ok(crate::kill_at::largest_part(&temp, "1.part"))
                    }) {
                        Ok(at) => at,
                        Err(e) => fail!(
                            "row 4: could not kill r2-sync at 50 % ({e}; log: {})",
                            crate::harness::tail(&log, 5)
                        ),
                    };
                    drop(child.wait());
                    let (out, err) = crate::harness::append_log(&log)?;
                    if !self
                        .argv_command(&argv)
                        .stdout(out)
                        .stderr(err)
                        .status()
                        .is_ok_and(|s| s.success())
                    {
                        fail!("row 4: r2-sync's second run failed: {}", crate::harness::tail(&log, 5));
                    }
                    if self.db.value("SELECT status FROM media WHERE id = 1")? != "archived" {
                        fail!("row 4: r2-sync did not archive the object after the restart");
                    }
                }
                let after = self.s3_sent()?;
                let again = after as i64 - before as i64 - big as i64;
                say(format!(
                    "  resume-{subject}-{run}: killed at {at} bytes; downloaded again {again} bytes"
                ));
                self.record("resume.pct", subject, run, calc(100.0 * again as f64 / big as f64))?;
                self.record("resume.bytes", subject, run, again)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_joins_the_first_runs_only() {
        assert_eq!(with_loop(1, 1, &["a", "b"]), ["a", "b", "bashloop"]);
        assert_eq!(with_loop(2, 1, &["a", "b"]), ["a", "b"]);
        assert_eq!(with_loop(1, 0, &["a"]), ["a"]);
    }

    #[test]
    fn globs_are_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["f0002.mp4", "f0001.mp4", "x.txt"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let names: Vec<String> = files_with(dir.path(), ".mp4")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["f0001.mp4", "f0002.mp4"]);
        random_file(&dir.path().join("r"), 1000).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("r")).unwrap().len(), 1000);
    }
}
