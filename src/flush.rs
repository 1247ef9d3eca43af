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
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};

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

/// Makes files and directory entries under one root durable.
pub struct Flusher {
    root: PathBuf,
    allow_syncfs: bool,
    /// The root's filesystem, when its syncfs may be shared; decided on first use.
    shared: OnceCell<Option<Shared>>,
}

/// One syncfs at a time; every caller that asked before it started is covered by it.
struct Shared {
    fs: Arc<File>,
    asked: AtomicU64,
    covered: AtomicU64,
    /// syncfs calls made.
    runs: AtomicU64,
    turn: Mutex<()>,
}

impl Shared {
    async fn sync(&self) -> io::Result<()> {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.turn.lock().await;
        if self.covered.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Everyone who asked until now wrote before this syncfs starts: it covers them all.
        let covers = self.asked.load(Ordering::SeqCst);
        let fs = Arc::clone(&self.fs);
        tokio::task::spawn_blocking(move || rustix::fs::syncfs(&*fs))
            .await
            .map_err(io::Error::other)??;
        self.covered.fetch_max(covers, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
        let root = self.root.clone();
        let decided = self
            .shared
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || -> io::Result<Option<Shared>> {
                    let fs = File::open(&root)?;
                    let f_type = rustix::fs::fstatfs(&fs)?.f_type as u64;
                    Ok(honours_syncfs(f_type).then(|| Shared {
                        fs: Arc::new(fs),
                        asked: AtomicU64::new(0),
                        covered: AtomicU64::new(0),
                        runs: AtomicU64::new(0),
                        turn: Mutex::new(()),
                    }))
                })
                .await
                .map_err(io::Error::other)?
            })
            .await;
        decided.ok().and_then(Option::as_ref)
    }

    /// True when this archive's files share syncfs calls: whoever renames or writes under the
    /// root may then skip its own fsyncs and call [`Self::entries`] once afterwards.
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

    /// Makes everything written, created or renamed under `dir` durable.
    pub async fn entries(&self, dir: &Path) -> io::Result<()> {
        match self.shared().await {
            Some(shared) => shared.sync().await,
            None => {
                let dir = dir.to_path_buf();
                tokio::task::spawn_blocking(move || File::open(dir)?.sync_all())
                    .await
                    .map_err(io::Error::other)?
            }
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
        let flusher = Arc::new(Flusher::new(dir.path(), true));
        assert!(
            flusher.is_shared().await,
            "the test's temp dir is on a local filesystem"
        );
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let (flusher, dir) = (Arc::clone(&flusher), dir.path().to_path_buf());
                tokio::spawn(async move { flusher.entries(&dir).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let shared = flusher.shared().await.unwrap();
        assert_eq!(shared.asked.load(Ordering::SeqCst), 64);
        assert_eq!(shared.covered.load(Ordering::SeqCst), 64, "every request is covered");
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
        flusher.entries(dir.path()).await.unwrap();
    }
}
