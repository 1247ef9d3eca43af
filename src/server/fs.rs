//! Opening archived files without ever leaving the archive, and streaming them.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use tokio::task::JoinHandle;

/// Opens `rel` (already validated by `request_path::decode`) under `root`, one component at
/// a time relative to the previous directory's descriptor with `O_NOFOLLOW`: a symlink
/// anywhere below the root (in or out of the archive: the pipeline never makes any) fails
/// with ELOOP/ENOTDIR, and no rename racing this walk can lead outside the root. The last
/// component is opened `O_NONBLOCK` so a FIFO cannot hang the thread; only regular files
/// are returned (anything else is `NotFound`).
pub fn open_within(root: &Path, rel: &str) -> io::Result<File> {
    let mut fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let kind = if last { OFlags::NONBLOCK } else { OFlags::DIRECTORY };
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | kind;
        fd = rustix::fs::openat(&fd, part, flags, Mode::empty())?;
    }
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok(file)
}

/// Whether an open error means "no such servable file" (404) rather than a fault (500).
pub fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
        || matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::LOOP.raw_os_error())
}

/// `len` bytes of a file from `offset`, as a stream of `chunk`-sized `Bytes`. Each chunk is
/// read with `pread` on the blocking pool straight into the buffer hyper sends (no
/// intermediate copy), and the next read starts as soon as a chunk is handed over, so disk
/// and socket overlap. Memory per download: two chunks.
pub struct FileChunks {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    chunk: usize,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileChunks {
    pub fn new(file: File, offset: u64, len: u64, chunk: usize) -> Self {
        let mut chunks = Self {
            file: Arc::new(file),
            offset,
            remaining: len,
            chunk: chunk.max(1),
            pending: None,
        };
        chunks.read_ahead();
        chunks
    }

    fn read_ahead(&mut self) {
        if self.remaining == 0 || self.pending.is_some() {
            return;
        }
        let n = self.remaining.min(self.chunk as u64);
        let (file, offset) = (self.file.clone(), self.offset);
        self.offset += n;
        self.remaining -= n;
        self.pending = Some(tokio::task::spawn_blocking(move || read_at(&file, offset, n as usize)));
    }
}

/// Exactly `n` bytes at `offset`; a file that shrank underneath us is an error, which makes
/// hyper cut the connection rather than send a short body under a longer Content-Length.
fn read_at(file: &File, offset: u64, n: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

impl futures::Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(pending).poll(cx));
        self.pending = None;
        let chunk = match joined {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                self.remaining = 0;
                return Poll::Ready(Some(Err(e)));
            }
            Err(join) => {
                self.remaining = 0;
                return Poll::Ready(Some(Err(io::Error::other(join))));
            }
        };
        self.read_ahead();
        Poll::Ready(Some(Ok(chunk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn chunks_cover_exactly_the_requested_slice() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f.bin"), &data).unwrap();
        let file = open_within(dir.path(), "a/f.bin").unwrap();
        let chunks: Vec<Bytes> = FileChunks::new(file, 17, 5000, 1024).try_collect().await.unwrap();
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks.concat(), data[17..5017]);
        let file = open_within(dir.path(), "a/f.bin").unwrap();
        let err = FileChunks::new(file, 9_000, 2_000, 4096).try_collect::<Vec<_>>().await;
        assert!(err.is_err(), "reading past the end is an error, not a short body");
    }

    #[test]
    fn symlinks_and_non_files_are_absent() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("d/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("d/ok"), b"ok").unwrap();
        assert!(open_within(dir.path(), "d/ok").is_ok());
        for rel in ["d/link", "out/secret", "d", "d/missing", "d/ok/x"] {
            let e = open_within(dir.path(), rel).unwrap_err();
            assert!(is_absent(&e), "{rel}: {e}");
        }
    }
}
