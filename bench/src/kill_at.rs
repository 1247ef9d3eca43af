//! SIGKILL a process once its download has reached a byte threshold (row 4; formerly
//! `bench/kill_at.py`). Progress is read by the caller's probe: the size of r2-sync's partial
//! file (written sequentially), or the test S3 server's `GET /_stats` counter (rclone: its
//! multi-thread download writes at offsets into a preallocated file, so the file's size says
//! nothing about progress). Fails when the process ended before the threshold or the timeout
//! passed, so the harness fails loudly instead of measuring nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::procfs;

#[derive(Debug, thiserror::Error)]
pub enum KillAtError {
    #[error("kill_at: process {pid} ended at {done} bytes, before {at}")]
    Ended { pid: u32, done: u64, at: u64 },
    #[error("kill_at: {secs}s passed at {done} bytes, before {at}")]
    Timeout { secs: u64, done: u64, at: u64 },
    #[error("kill_at: progress unknown: {0}")]
    Probe(String),
    #[error("kill_at: cannot signal process {pid}: {source}")]
    Kill { pid: u32, source: std::io::Error },
}

/// Polls `progress` every 5 ms; SIGKILLs `pid` once it reaches `at`. The progress seen then.
pub fn kill_at(
    pid: u32,
    at: u64,
    timeout: Duration,
    mut progress: impl FnMut() -> Result<u64, String>,
) -> Result<u64, KillAtError> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = progress().map_err(KillAtError::Probe)?;
        if done >= at {
            let target = Pid::from_raw(pid as i32).ok_or(KillAtError::Ended { pid, done, at })?;
            kill_process(target, Signal::KILL).map_err(|e| KillAtError::Kill { pid, source: e.into() })?;
            return Ok(done);
        }
        if !procfs::alive(pid) {
            return Err(KillAtError::Ended { pid, done, at });
        }
        if Instant::now() > deadline {
            return Err(KillAtError::Timeout {
                secs: timeout.as_secs(),
                done,
                at,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The size of the largest `<dir>/*/<name>` (r2-sync's `<ARCHIVE_DIR>/.r2-sync-tmp/<instance>/
/// <id>.part`: `*` is the instance's folder); 0 while there is none.
pub fn largest_part(dir: &Path, name: &str) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path().join(name)).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_found_in_any_instance_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(largest_part(&dir.path().join("missing"), "1.part"), 0);
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("a/1.part"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("b/1.part"), [0u8; 30]).unwrap();
        std::fs::write(dir.path().join("b/2.part"), [0u8; 50]).unwrap();
        assert_eq!(largest_part(dir.path(), "1.part"), 30);
    }

    #[test]
    fn a_process_is_killed_at_the_threshold_and_an_ended_one_is_an_error() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut n = 0;
        let seen = kill_at(child.id(), 3, Duration::from_secs(5), || {
            n += 1;
            Ok(n)
        })
        .unwrap();
        assert_eq!(seen, 3);
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed: {status:?}");

        let mut done = std::process::Command::new("true").spawn().unwrap();
        drop(done.wait());
        let err = kill_at(done.id(), 10, Duration::from_secs(5), || Ok(1)).unwrap_err();
        assert!(matches!(err, KillAtError::Ended { done: 1, at: 10, .. }), "{err}");
    }
}
