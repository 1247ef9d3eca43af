//! Durability of what is written under the archive.
//!
//! Per file, that takes an fsync of the file and one of its directory, and on most disks each
//! fsync is a device cache flush: the main cost of small files. Files that finish together
//! can share one `syncfs(2)` instead: one writeback of the filesystem and one flush for all of
//! them. That is trusted only where syncfs is known to write back everything and flush the
//! device (ext4, XFS, Btrfs, ZFS, F2FS; tmpfs keeps nothing anyway). Elsewhere (FUSE, such as
//! Unraid's `/mnt/user` shares, NFS, SMB) syncfs may return with nothing made durable, so each
//! file is fsynced as before. `ARCHIVE_SYNCFS=false` keeps per-file fsyncs everywhere.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;

use crate::coalesce::Coalescer;

/// `statfs(2)` magic numbers of filesystems whose syncfs writes back every dirty inode and
/// flushes the device before it returns.
const SYNCFS_HONOURED: &[u64] = &[
    0xEF53,      // ext2/3/4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0x2FC1_2FC1, // ZFS
    0xF2F5_2010, // F2FS
    0x0102_1994, // tmpfs
];

/// Whether syncfs can stand in for fsyncs on a filesystem with this `f_type`.
pub fn honours_syncfs(f_type: u64) -> bool {
    SYNCFS_HONOURED.contains(&f_type)
}

/// Test builds only (`fault-injection`): `R2SYNC_FAULT_SYNCFS=<name>` makes the root's
/// filesystem count as honouring syncfs whatever it is, and each shared syncfs also fsync the
/// file `<root>/<name>`. The power-cut tests' FUSE file system, to which the kernel does not
/// pass syncfs on, takes that fsync as the syncfs: everything written to it before then is
/// made durable. That is how the shared flush is tried against power cuts.
#[cfg(feature = "fault-injection")]
fn syncfs_stand_in(root: &Path) -> Option<PathBuf> {
    std::env::var_os("R2SYNC_FAULT_SYNCFS").map(|name| root.join(name))
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn syncfs_stand_in(_: &Path) -> Option<PathBuf> {
    None
}

/// Makes files and directory entries under one root durable.
pub struct Flusher {
    root: PathBuf,
    allow_syncfs: bool,
    /// The root's filesystem, when its syncfs may be shared; decided on first use.
    shared: OnceCell<Option<Shared>>,
}

/// One syncfs at a time; everyone who asked before it started is covered by it (they wrote
/// before asking), so callers arriving during one share the next.
struct Shared {
    fs: std::sync::Arc<File>,
    syncs: Coalescer<(), io::Result<()>>,
    /// syncfs calls made.
    runs: AtomicU64,
    /// See [`syncfs_stand_in`].
    stand_in: Option<PathBuf>,
}

impl Shared {
    async fn sync(&self) -> io::Result<()> {
        let syncfs = |callers: Vec<()>| async move {
            let fs = std::sync::Arc::clone(&self.fs);
            let stand_in = self.stand_in.clone();
            let done = tokio::task::spawn_blocking(move || {
                rustix::fs::syncfs(&*fs)?;
                match stand_in {
                    Some(file) => File::options()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(file)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO)),
                    None => Ok(()),
                }
            })
            .await;
            self.runs.fetch_add(1, Ordering::Relaxed);
            // io::Error is not Clone: every caller gets its own copy of the answer.
            let answer = |_| match &done {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(io::Error::from(*e)),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            callers.into_iter().map(answer).collect()
        };
        self.syncs
            .submit((), syncfs)
            .await
            .unwrap_or_else(|| Err(io::Error::other("a shared syncfs was dropped")))
    }
}

impl Flusher {
    pub fn new(root: &Path, allow_syncfs: bool) -> Self {
        Self {
            root: root.to_path_buf(),
            allow_syncfs,
            shared: OnceCell::new(),
        }
    }

    /// The shared syncfs, or None for per-file fsyncs. The root must exist; until it does,
    /// files are fsynced one by one.
    async fn shared(&self) -> Option<&Shared> {
        if !self.allow_syncfs {
            return None;
        }
        let decide = || async {
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || -> io::Result<Option<Shared>> {
                let fs = File::open(&root)?;
                let f_type = rustix::fs::fstatfs(&fs)?.f_type as u64;
                let stand_in = syncfs_stand_in(&root);
                Ok((honours_syncfs(f_type) || stand_in.is_some()).then(|| Shared {
                    fs: std::sync::Arc::new(fs),
                    syncs: Coalescer::default(),
                    runs: AtomicU64::new(0),
                    stand_in,
                }))
            })
            .await
            .map_err(io::Error::other)?
        };
        self.shared.get_or_try_init(decide).await.ok().and_then(Option::as_ref)
    }

    /// True when this archive's files share syncfs calls: whoever writes or renames under
    /// the root may then skip its own fsyncs and call [`Self::barrier`] once afterwards.
    pub async fn is_shared(&self) -> bool {
        self.shared().await.is_some()
    }

    /// With shared syncfs, makes everything written under the root before the call durable;
    /// otherwise does nothing (the caller fsynced what it wrote).
    pub async fn barrier(&self) -> io::Result<()> {
        match self.shared().await {
            Some(shared) => shared.sync().await,
            None => Ok(()),
        }
    }

    /// Makes what was written to `file` durable.
    pub async fn data(&self, file: &tokio::fs::File) -> io::Result<()> {
        match self.shared().await {
            Some(shared) => shared.sync().await,
            None => file.sync_data().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_filesystems_share_syncfs() {
        assert!(honours_syncfs(0xEF53));
        assert!(honours_syncfs(0x5846_5342));
        // FUSE (Unraid's /mnt/user), NFS, SMB2.
        assert!(!honours_syncfs(0x6573_5546));
        assert!(!honours_syncfs(0x6969));
        assert!(!honours_syncfs(0xFE53_4D42));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_callers_share_few_syncfs_calls() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = std::sync::Arc::new(Flusher::new(dir.path(), true));
        assert!(
            flusher.is_shared().await,
            "the test's temp dir is on a local filesystem"
        );
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let flusher = std::sync::Arc::clone(&flusher);
                tokio::spawn(async move { flusher.barrier().await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let shared = flusher.shared().await.unwrap();
        let runs = shared.runs.load(Ordering::Relaxed);
        assert!((1..64).contains(&runs), "64 requests made {runs} syncfs calls");
    }

    #[tokio::test]
    async fn per_file_when_syncfs_is_not_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::new(dir.path(), false);
        assert!(!flusher.is_shared().await);
        let file = tokio::fs::File::create(dir.path().join("a")).await.unwrap();
        flusher.data(&file).await.unwrap();
        flusher.barrier().await.unwrap();
    }
}
