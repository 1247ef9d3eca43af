//! Opening archived files without ever leaving the archive, and streaming them.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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

/// `len` bytes of a file from `offset`, as a stream of `chunk`-sized `Bytes`, each read
/// with `pread` straight into the buffer hyper sends (no intermediate copy). A chunk already
/// in the page cache (the common case when a player seeks around a file it is watching) is
/// read right here with `RWF_NOWAIT`, which never blocks; only what must come from the disk
/// takes a trip to the blocking pool. The next chunk is read as soon as one is handed over,
/// so disk and socket overlap. Memory per download: two chunks.
pub struct FileChunks {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    chunk: usize,
    pending: Option<Pending>,
}

enum Pending {
    Ready(io::Result<Bytes>),
    Reading(JoinHandle<io::Result<Bytes>>),
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
        let n = self.remaining.min(self.chunk as u64) as usize;
        let offset = self.offset;
        self.offset += n as u64;
        self.remaining -= n as u64;
        let mut buf = vec![0u8; n];
        let cached = read_cached(&self.file, offset, &mut buf);
        self.pending = Some(if cached == n {
            Pending::Ready(Ok(Bytes::from(buf)))
        } else {
            let file = self.file.clone();
            Pending::Reading(tokio::task::spawn_blocking(move || {
                read_at(&file, offset + cached as u64, &mut buf[cached..])?;
                Ok(Bytes::from(buf))
            }))
        });
    }
}

/// Reads what the page cache holds of `buf.len()` bytes at `offset` without blocking;
/// returns how many bytes it got (0 when the kernel would have to wait for the disk, or
/// does not support `RWF_NOWAIT` on this filesystem).
fn read_cached(file: &File, offset: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let slice = &mut [io::IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(file, slice, offset + done as u64, rustix::io::ReadWriteFlags::NOWAIT) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

/// Fills `buf` from `offset`; a file that shrank underneath us is an error, which makes
/// hyper cut the connection rather than send a short body under a longer Content-Length.
fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

impl futures::Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let result = match self.pending.take() {
            None => return Poll::Ready(None),
            Some(Pending::Ready(result)) => result,
            Some(Pending::Reading(mut handle)) => match Pin::new(&mut handle).poll(cx) {
                Poll::Ready(joined) => joined.unwrap_or_else(|join| Err(io::Error::other(join))),
                Poll::Pending => {
                    self.pending = Some(Pending::Reading(handle));
                    return Poll::Pending;
                }
            },
        };
        match result {
            Ok(chunk) => {
                self.read_ahead();
                Poll::Ready(Some(Ok(chunk)))
            }
            Err(e) => {
                self.remaining = 0;
                Poll::Ready(Some(Err(e)))
            }
        }
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
