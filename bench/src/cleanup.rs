//! What the harness leaves behind, undone on exit, on failure and on Ctrl-C (SIGINT, SIGTERM):
//! every process it started stopped, the scratch database dropped, the loop-mounted
//! filesystem unmounted and detached, the temp directories removed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use r2_sync_test_rig::pg::Postgres;
use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};

/// A clean-up step that failed (reported, never fatal: the others still run).
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("drop the scratch database {name}: {source}")]
    Db {
        name: String,
        source: r2_sync_test_rig::pg::PgError,
    },
    #[error("remove {}: {source}", path.display())]
    Remove { path: PathBuf, source: std::io::Error },
}

/// A loop device mounted at a directory.
#[derive(Debug, Clone)]
pub struct Mount {
    pub dir: PathBuf,
    pub device: String,
}

/// Everything to undo, recorded as it is made.
#[derive(Debug, Default)]
pub struct Cleanup {
    pids: Vec<u32>,
    db: Option<String>,
    mount: Option<Mount>,
    dirs: Vec<PathBuf>,
}

/// The record, shared with the signal handler.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<Cleanup>>);

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Cleanup) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A process to stop (SIGTERM, then wait).
    pub fn process(&self, pid: u32) {
        self.with(|c| c.pids.push(pid));
    }

    pub fn database(&self, name: &str) {
        self.with(|c| c.db = Some(name.to_owned()));
    }

    pub fn mount(&self, mount: Mount) {
        self.with(|c| c.mount = Some(mount));
    }

    /// A directory to remove, after the unmount.
    pub fn dir(&self, dir: PathBuf) {
        self.with(|c| c.dirs.push(dir));
    }

    /// Takes the record, so that it is undone once only.
    pub fn take(&self) -> Cleanup {
        self.with(std::mem::take)
    }
}

impl Cleanup {
    /// Undoes everything recorded; the steps that failed.
    pub async fn run(self, pg: &Postgres) -> Vec<CleanupError> {
        let mut errors = Vec::new();
        let pids: Vec<Pid> = self.pids.iter().filter_map(|p| Pid::from_raw(*p as i32)).collect();
        for pid in &pids {
            // Already gone is fine.
            kill_process(*pid, Signal::TERM).ok();
        }
        for pid in &pids {
            // Not our child any more (reaped by its owner) is fine.
            waitpid(Some(*pid), WaitOptions::empty()).ok();
        }
        if let Some(name) = self.db {
            if let Err(source) = pg.drop_database(&name).await {
                errors.push(CleanupError::Db { name, source });
            }
        }
        if let Some(m) = self.mount {
            // Each may fail when the set-up stopped half-way; the next still runs.
            drop(quiet(Command::new("umount").arg(&m.dir)));
            drop(quiet(Command::new("losetup").arg("-d").arg(&m.device)));
        }
        for dir in self.dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => errors.push(CleanupError::Remove { path: dir, source }),
            }
        }
        errors
    }
}

fn quiet(cmd: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()
}
