//! Zero-copy file bodies: bytes go from the page cache to the socket with `sendfile(2)`,
//! never through user space, while hyper still writes the status line, headers, chunking
//! decisions, keep-alive and pipelining exactly as for any other body.
//!
//! hyper owns the socket for the whole connection and cannot hand it back for one response,
//! so the file body and the socket meet through a per-connection FIFO of file regions
//! ([`Regions`]) and a "sentinel" buffer:
//!
//! - the body ([`SendfileChunks`]), when hyper polls it, pushes a region (file, offset, len)
//!   and yields a chunk that is a slice of the static [`SENTINEL`] at a per-region tag offset;
//! - hyper queues that chunk without copying it (the connection uses its queue/writev write
//!   strategy, `http1::Builder::writev(true)`: never the flattening one, which would copy) and
//!   later hands it to our socket wrapper as one `IoSlice` among the headers';
//! - the socket wrapper ([`poll_write_vectored`]) writes ordinary slices with `writev` and,
//!   when the next slice points into the sentinel, sends the front region's bytes with
//!   `sendfile` instead, and reports them written so hyper advances past the chunk.
//!
//! Why it never sends wrong bytes: a sentinel slice must match the front region exactly (its
//! offset in the sentinel is the region's tag plus what was already sent, its length what is
//! left); tags rotate, so a region pushed and then lost (were hyper ever to drop a polled
//! chunk) makes the next region's slice mismatch. Ordinary bytes while a region is half sent
//! are a mismatch too. A mismatch is an I/O error: hyper closes the connection. A file that
//! shrinks under a region makes `sendfile` return 0, also an error (the client sees a short
//! body and a closed connection, as with the buffered path). HEAD, 304 and error answers have
//! no file body, so they never push a region.
//!
//! Files changed in place: `sendfile` queues references to page-cache pages, not copies, so
//! bytes already handed to the socket (on loopback or a veth pair, bytes already in the
//! client's receive queue) are read when they leave. A file truncated in place during its
//! download can make its last queued bytes arrive as zeros, before the short body and closed
//! connection tell the client the answer is incomplete (the buffered path sends a short body
//! of the file's bytes). nginx's `sendfile on` shares this. The archive never changes a file
//! in place: files are written under a temporary name and renamed in, so a replacement is a
//! new inode and the one being served stays intact; `Limits::sendfile` turns the path off.
//!
//! Alternatives weighed (docs/zero-copy.md): mmap'd chunks as `Bytes` (one copy left, SIGBUS
//! when a file is truncated while mapped, and `unsafe`); answering file requests outside hyper
//! (our own HTTP/1.1 writer: every header, keep-alive and pipelining rule again). The sentinel
//! keeps hyper in charge of the protocol and moves only the body bytes.
//!
//! Blocking: `sendfile` reads the page cache and would block the runtime thread on a disk
//! read. Before a region is pushed, its first and last bytes are probed with
//! `preadv2(RWF_NOWAIT)`; when either is not cached, the region is read once in the blocking
//! pool (warming the cache) before it is sent, as the buffered path would have read it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::Future;
use thiserror::Error;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The largest region one chunk stands for.
pub const REGION_MAX: usize = 4 << 20;
/// Distinct tags (start offsets in the sentinel) regions rotate through.
const TAGS: usize = 4096;
/// Never read and never written: only the addresses of slices of it mean something. A
/// zero-filled static lives in .bss and costs no memory until touched.
static SENTINEL: [u8; REGION_MAX + TAGS] = [0; REGION_MAX + TAGS];

#[derive(Debug, Error)]
pub enum SendfileError {
    #[error("a body chunk does not match the next file region; closing the connection")]
    Desync,
    #[error("the file ended before its region was sent (it shrank while being served)")]
    Shrank,
}

impl From<SendfileError> for io::Error {
    fn from(e: SendfileError) -> Self {
        io::Error::other(e)
    }
}

struct Region {
    file: Arc<File>,
    offset: u64,
    len: usize,
    tag: usize,
    sent: usize,
}

#[derive(Default)]
struct Fifo {
    queue: VecDeque<Region>,
    next_tag: usize,
}

/// One connection's file regions, in the order their chunks were handed to hyper.
#[derive(Clone, Default)]
pub struct Regions(Arc<Mutex<Fifo>>);

impl Regions {
    fn lock(&self) -> MutexGuard<'_, Fifo> {
        // A panic while holding it cannot leave the queue half-updated (each change is one
        // push, pop or add), so a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `len` bytes of `file` at `offset` and returns the chunk that stands for them.
    fn push(&self, file: Arc<File>, offset: u64, len: usize) -> Bytes {
        debug_assert!(len > 0 && len <= REGION_MAX);
        let mut fifo = self.lock();
        let tag = fifo.next_tag;
        fifo.next_tag = (tag + 1) % TAGS;
        fifo.queue.push_back(Region {
            file,
            offset,
            len,
            tag,
            sent: 0,
        });
        Bytes::from_static(&SENTINEL[tag..tag + len])
    }

    /// The front region's file, file offset and bytes left, if `slice` is exactly its rest.
    fn front_matching(&self, slice: &IoSlice<'_>) -> Result<(Arc<File>, u64, usize), SendfileError> {
        let at = sentinel_offset(slice).ok_or(SendfileError::Desync)?;
        let fifo = self.lock();
        let r = fifo.queue.front().ok_or(SendfileError::Desync)?;
        if at != r.tag + r.sent || slice.len() != r.len - r.sent {
            return Err(SendfileError::Desync);
        }
        Ok((r.file.clone(), r.offset + r.sent as u64, r.len - r.sent))
    }

    /// `n` bytes of the front region went out.
    fn advance(&self, n: usize) {
        let mut fifo = self.lock();
        if let Some(r) = fifo.queue.front_mut() {
            r.sent += n;
            if r.sent >= r.len {
                fifo.queue.pop_front();
            }
        }
    }

    /// Ordinary bytes may go out only between regions, never in the middle of one.
    fn check_between(&self) -> Result<(), SendfileError> {
        match self.lock().queue.front() {
            Some(r) if r.sent > 0 => Err(SendfileError::Desync),
            _ => Ok(()),
        }
    }
}

/// Where `slice` starts in the sentinel, if it is a non-empty slice of it.
fn sentinel_offset(slice: &[u8]) -> Option<usize> {
    let base = SENTINEL.as_ptr() as usize;
    let start = slice.as_ptr() as usize;
    let inside = !slice.is_empty() && start >= base && start + slice.len() <= base + SENTINEL.len();
    inside.then(|| start - base)
}

/// The socket side: writes `bufs` to `tcp`, sending a region's file bytes where its sentinel
/// chunk comes up. Like any vectored write it may write less than everything.
pub fn poll_write_vectored(
    tcp: &mut TcpStream,
    regions: &Regions,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
        return Pin::new(tcp).poll_write_vectored(cx, bufs);
    };
    let bufs = &bufs[first..];
    if sentinel_offset(&bufs[0]).is_some() {
        return poll_send_region(tcp, regions, cx, &bufs[0]);
    }
    regions.check_between()?;
    match bufs.iter().position(|b| sentinel_offset(b).is_some()) {
        None => Pin::new(tcp).poll_write_vectored(cx, bufs),
        Some(plain) => poll_send_more(tcp, cx, &bufs[..plain]),
    }
}

/// Writes bytes a region follows (a response's headers) with `MSG_MORE`: they wait for the
/// file's first bytes and leave in the same segments (as with nginx's `tcp_nopush`), not in a
/// packet of their own, which `TCP_NODELAY` would otherwise send at once.
fn poll_send_more(tcp: &mut TcpStream, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
    use rustix::net::{SendAncillaryBuffer, SendFlags};
    let sock: &TcpStream = tcp;
    loop {
        ready!(sock.poll_write_ready(cx))?;
        let sent = sock.try_io(Interest::WRITABLE, || {
            let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
            rustix::net::sendmsg(sock, bufs, &mut SendAncillaryBuffer::default(), flags).map_err(io::Error::from)
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

fn poll_send_region(
    tcp: &mut TcpStream,
    regions: &Regions,
    cx: &mut Context<'_>,
    slice: &IoSlice<'_>,
) -> Poll<io::Result<usize>> {
    let (file, offset, left) = regions.front_matching(slice)?;
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        let mut at = offset;
        let sock: &TcpStream = tcp;
        let sent = sock.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(sock, &*file, Some(&mut at), left).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                // Reset rather than close: what the queue still holds is dropped, not sent
                // (see "Files changed in place" above). Best effort: closing cuts it anyway.
                drop(tcp.set_zero_linger());
                return Poll::Ready(Err(SendfileError::Shrank.into()));
            }
            Ok(n) => {
                regions.advance(n);
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// The body side: `len` bytes of a file from `offset`, as sentinel chunks of up to
/// [`REGION_MAX`], each pushed to the connection's [`Regions`] as hyper takes it.
pub struct SendfileChunks {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    /// Buffer size for warming a region that is not in the page cache.
    chunk: usize,
    regions: Regions,
    warming: Option<JoinHandle<io::Result<()>>>,
}

impl SendfileChunks {
    pub fn new(file: File, offset: u64, len: u64, chunk: usize, regions: Regions) -> Self {
        Self {
            file: Arc::new(file),
            offset,
            remaining: len,
            chunk: chunk.max(1),
            regions,
            warming: None,
        }
    }

    fn next_len(&self) -> usize {
        self.remaining.min(REGION_MAX as u64) as usize
    }

    fn take_region(&mut self) -> Bytes {
        let len = self.next_len();
        let chunk = self.regions.push(self.file.clone(), self.offset, len);
        self.offset += len as u64;
        self.remaining -= len as u64;
        chunk
    }
}

/// Whether the first and last bytes of the range are in the page cache (a read would not
/// wait for the disk).
fn cached(file: &File, offset: u64, len: usize) -> bool {
    let probe = |at: u64| {
        let mut byte = [0u8; 1];
        let slice = &mut [io::IoSliceMut::new(&mut byte)];
        matches!(
            rustix::io::preadv2(file, slice, at, rustix::io::ReadWriteFlags::NOWAIT),
            Ok(1)
        )
    };
    probe(offset) && probe(offset + len as u64 - 1)
}

/// Reads the range once (in the blocking pool) so `sendfile` finds it cached; a file
/// shorter than the range is an error.
fn warm(file: &File, offset: u64, len: usize, chunk: usize) -> io::Result<()> {
    let mut buf = vec![0u8; chunk.min(len)];
    let mut done = 0;
    while done < len {
        let n = buf.len().min(len - done);
        file.read_exact_at(&mut buf[..n], offset + done as u64)?;
        done += n;
    }
    Ok(())
}

impl futures::Stream for SendfileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.warming.is_none() {
            let len = self.next_len();
            if cached(&self.file, self.offset, len) {
                return Poll::Ready(Some(Ok(self.take_region())));
            }
            let (file, offset, chunk) = (self.file.clone(), self.offset, self.chunk);
            self.warming = Some(tokio::task::spawn_blocking(move || warm(&file, offset, len, chunk)));
        }
        let handle = self.warming.as_mut().expect("set above");
        let warmed = ready!(Pin::new(handle).poll(cx)).unwrap_or_else(|join| Err(io::Error::other(join)));
        self.warming = None;
        match warmed {
            Ok(()) => Poll::Ready(Some(Ok(self.take_region()))),
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

    /// A 100-byte file to make regions of (kept while its directory lives).
    fn hundred_bytes() -> (tempfile::TempDir, Arc<File>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 100]).unwrap();
        let file = Arc::new(File::open(dir.path().join("f")).unwrap());
        (dir, file)
    }

    #[test]
    fn only_exact_rests_of_the_front_region_match() {
        let (_dir, file) = hundred_bytes();
        let regions = Regions::default();
        let a = regions.push(file.clone(), 0, 60);
        let b = regions.push(file.clone(), 60, 40);
        // b before a, a shortened, or a with a different length: never sent.
        assert!(regions.front_matching(&IoSlice::new(&b)).is_err());
        assert!(regions.front_matching(&IoSlice::new(&a[..59])).is_err());
        assert!(regions.front_matching(&IoSlice::new(&a[1..])).is_err());
        assert!(regions.front_matching(&IoSlice::new(b"plain")).is_err());
        let (_, offset, left) = regions.front_matching(&IoSlice::new(&a)).unwrap();
        assert_eq!((offset, left), (0, 60));
        regions.advance(10);
        assert!(
            regions.check_between().is_err(),
            "plain bytes inside a half-sent region"
        );
        assert!(regions.front_matching(&IoSlice::new(&a)).is_err(), "already sent bytes");
        let (_, offset, left) = regions.front_matching(&IoSlice::new(&a[10..])).unwrap();
        assert_eq!((offset, left), (10, 50));
        regions.advance(50);
        assert!(regions.check_between().is_ok());
        let (_, offset, left) = regions.front_matching(&IoSlice::new(&b)).unwrap();
        assert_eq!((offset, left), (60, 40));
    }

    /// Over a real socket: headers then the region's file bytes, in order; a chunk of the
    /// wrong region is refused with nothing written.
    #[tokio::test]
    async fn the_socket_gets_the_file_bytes_where_the_chunk_stands_and_nothing_on_a_mismatch() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let file = Arc::new(File::open(dir.path().join("f")).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let regions = Regions::default();
        let a = regions.push(file.clone(), 10, 30);
        let b = regions.push(file, 60, 30);
        let mut write = |bufs: &[IoSlice<'_>]| {
            let waker = futures::task::noop_waker();
            match poll_write_vectored(&mut server, &regions, &mut Context::from_waker(&waker), bufs) {
                Poll::Ready(result) => result,
                Poll::Pending => panic!("a fresh socket is writable"),
            }
        };
        assert!(write(&[IoSlice::new(&b)]).is_err(), "b before a");
        assert_eq!(write(&[IoSlice::new(b"head"), IoSlice::new(&a)]).unwrap(), 4);
        assert_eq!(write(&[IoSlice::new(&a), IoSlice::new(b"next")]).unwrap(), 30);
        assert_eq!(write(&[IoSlice::new(b"next"), IoSlice::new(&b)]).unwrap(), 4);
        assert_eq!(write(&[IoSlice::new(&b)]).unwrap(), 30);
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [&b"head"[..], &data[10..40], b"next", &data[60..90]].concat());
    }

    #[test]
    fn a_lost_region_makes_the_next_one_mismatch_even_at_equal_length() {
        let (_dir, file) = hundred_bytes();
        let regions = Regions::default();
        let _lost = regions.push(file.clone(), 0, 50);
        let next = regions.push(file, 50, 50);
        assert!(regions.front_matching(&IoSlice::new(&next)).is_err());
    }
}
