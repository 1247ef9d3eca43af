//! Resumable, verified download of one object into a temp file.
//!
//! The object is fetched in segments; after each one the file is fsynced (and, once, when it
//! is new, its directory) and only then is the new length recorded in the ledger, so a
//! recorded length is always on disk. A restart truncates the temp file to the recorded
//! length, re-hashes that prefix, and continues with a ranged GET guarded by `If-Match` on
//! the ETag.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::SemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::hashing::{Digests, Hashes};
use super::transfers::Transfers;
use crate::flush::Flusher;
use crate::storage::{ObjectInfo, ObjectKey, Storage, StorageError};

/// Bytes fetched per request; also the checkpoint interval. Test builds with crash points
/// checkpoint far more often, so that small test files resume from many offsets.
#[cfg(not(feature = "fault-injection"))]
pub const SEGMENT: u64 = 64 << 20;
#[cfg(feature = "fault-injection")]
pub const SEGMENT: u64 = 256 << 10;
const WRITE_BUFFER: usize = 1 << 20;
/// A transfer that makes no progress for this long is abandoned (and retried). Test builds
/// give up sooner so that stall scenarios run in seconds.
#[cfg(not(feature = "fault-injection"))]
const STALL: Duration = Duration::from_secs(60);
#[cfg(feature = "fault-injection")]
const STALL: Duration = Duration::from_secs(3);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum DownloadError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("temp file {path}: {source}")]
    Disk {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no data received for {}s", STALL.as_secs())]
    Stalled,
    #[error("interrupted by shutdown")]
    Interrupted,
    #[error("size mismatch: bucket says {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("checksum mismatch: ETag {etag}, MD5 of the bytes {actual}")]
    ChecksumMismatch { etag: String, actual: String },
}

impl DownloadError {
    /// The archive's filesystem is full (or over quota).
    pub fn is_disk_full(&self) -> bool {
        match self {
            DownloadError::Disk { source, .. } | DownloadError::Storage(StorageError::Local { source, .. }) => {
                crate::archive::is_disk_full(source)
            }
            _ => false,
        }
    }

    fn disk(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
        move |source| DownloadError::Disk {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A finished, verified download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub sha256: String,
    /// Bytes fetched from the bucket by this call (less than the size after a resume).
    pub fetched: u64,
    /// The object came whole with its first request, and its temp file is not yet made
    /// durable unless each file is fsynced on its own: the placement's flush covers it.
    pub whole: bool,
}

/// The ETag of a single-part upload is the MD5 of the body; multipart ETags (`…-N`) are not.
pub fn etag_is_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks the finished file against what the bucket said: the size always, the MD5 when the
/// ETag is one (`md5_hex` is then required).
pub fn verify(object: &ObjectInfo, size: u64, md5_hex: Option<&str>) -> Result<(), DownloadError> {
    if size != object.size {
        return Err(DownloadError::SizeMismatch {
            expected: object.size,
            actual: size,
        });
    }
    if etag_is_md5(&object.etag) {
        let actual = md5_hex.unwrap_or("not computed");
        if !object.etag.eq_ignore_ascii_case(actual) {
            return Err(DownloadError::ChecksumMismatch {
                etag: object.etag.clone(),
                actual: actual.to_owned(),
            });
        }
    }
    Ok(())
}

/// Writes through a buffer while hashing and counting what passes.
struct HashingWriter {
    inner: BufWriter<tokio::fs::File>,
    hashes: Hashes,
    written: Arc<AtomicU64>,
}

impl AsyncWrite for HashingWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        // Wait for room in the hashers first, so that what is written is always hashed.
        if let Err(e) = ready!(self.hashes.poll_ready(cx)) {
            return Poll::Ready(Err(e));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.hashes.feed(Bytes::copy_from_slice(&buf[..n]))?;
            let total = self.written.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            crate::fault::bytes(total);
        }
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Opens `temp` for appending after `resume_from` bytes (truncating anything beyond, which
/// was never recorded as durable) and hashes the kept prefix.
async fn open_resumed(
    temp: &Path,
    resume_from: u64,
    size: u64,
    mut hashes: Hashes,
    written: Arc<AtomicU64>,
) -> Result<HashingWriter, DownloadError> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(temp)
        .await
        .map_err(DownloadError::disk(temp))?;
    let on_disk = file.metadata().await.map_err(DownloadError::disk(temp))?.len();
    let keep = resume_from.min(on_disk);
    file.set_len(keep).await.map_err(DownloadError::disk(temp))?;
    // Only a resumed transfer reads anything back: no buffer for the common fresh start.
    let mut buf = vec![0u8; if keep > 0 { WRITE_BUFFER } else { 0 }];
    let mut left = keep;
    while left > 0 {
        let n = file
            .read(&mut buf[..left.min(WRITE_BUFFER as u64) as usize])
            .await
            .map_err(DownloadError::disk(temp))?;
        if n == 0 {
            break;
        }
        hashes
            .feed_async(Bytes::copy_from_slice(&buf[..n]))
            .await
            .map_err(DownloadError::disk(temp))?;
        left -= n as u64;
    }
    written.store(keep, Ordering::Relaxed);
    // A small object needs no more buffer than its own size.
    let capacity = usize::try_from(size.saturating_sub(keep)).map_or(WRITE_BUFFER, |left| left.clamp(1, WRITE_BUFFER));
    let inner = BufWriter::with_capacity(capacity, file);
    Ok(HashingWriter { inner, hashes, written })
}

/// What the caller does at each durable checkpoint (records progress in the ledger).
pub type CheckpointFuture<'a> = Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
pub type Checkpoint<'a> = &'a (dyn Fn(u64) -> CheckpointFuture<'a> + Send + Sync);

pub struct Request<'a> {
    pub storage: &'a Storage,
    pub flush: &'a Flusher,
    /// Bounds the transfers under way (`SYNC_CONCURRENCY`); held only while bytes flow.
    pub transfers: &'a Transfers,
    pub key: &'a ObjectKey,
    pub object: &'a ObjectInfo,
    pub temp: PathBuf,
    pub resume_from: u64,
    /// The object's first bytes, already fetched (with `resume_from` 0), maybe all of it.
    pub prefix: Bytes,
    /// The share of a transfer slot the request for `prefix` took: kept until a whole object
    /// is on disk, so that bodies in memory stay bounded; given back before a bigger one is
    /// continued (which takes a whole slot).
    pub first_share: Option<SemaphorePermit<'a>>,
    pub shutdown: &'a CancellationToken,
    pub log: &'a slog::Logger,
    /// Bytes of the object in the temp file, counted as they are written: the caller's,
    /// so that the dashboard can show the transfer move.
    pub written: Arc<AtomicU64>,
}

/// Downloads the rest of the object and verifies the whole file.
pub async fn run(mut req: Request<'_>, checkpoint: Checkpoint<'_>) -> Result<Downloaded, DownloadError> {
    if req.resume_from == 0 && req.prefix.len() as u64 == req.object.size {
        return store_whole(&req).await;
    }
    drop(req.first_share.take());
    let hashes = Hashes::start(etag_is_md5(&req.object.etag), req.object.size);
    let written = Arc::clone(&req.written);
    let mut writer = open_resumed(
        &req.temp,
        req.resume_from,
        req.object.size,
        hashes,
        Arc::clone(&written),
    )
    .await?;
    if written.load(Ordering::Relaxed) == 0 && !req.flush.is_shared().await {
        // A new temp file: its name made durable before the ledger records any of its bytes
        // (fsyncing a file makes its bytes durable, not its directory entry; a shared flush
        // covers both).
        sync_parent(&req.temp).await?;
    }
    if !req.prefix.is_empty() {
        writer
            .write_all(&req.prefix)
            .await
            .map_err(DownloadError::disk(&req.temp))?;
    }
    let start = written.load(Ordering::Relaxed);
    let total = req.object.size;
    let result = {
        let _permit = req.transfers.large().await;
        let watch = watch_progress(req.log.clone(), Arc::clone(&written), start, total);
        let result = fetch_segments(&req, &mut writer, &written, checkpoint).await;
        watch.abort();
        match result {
            Err(e) if e.is_disk_full() => {
                // Give the space back (close and remove) before the next transfer starts
                // writing into the same full disk; the download starts over anyway.
                drop(writer);
                if let Err(gone) = crate::archive::remove_temp(&req.temp) {
                    slog::warn!(req.log, "temp file not removed on a full disk; start-up removes it";
                        "path" => req.temp.display().to_string(), "error" => %gone);
                }
                return Err(e);
            }
            other => other,
        }
    };
    // Whatever happened, make what was written durable and record it before returning.
    let durable = sync(&mut writer, &req).await;
    // On success the caller records the finished file at once; only an interrupted
    // transfer needs its progress recorded here.
    if durable.is_ok() && result.is_err() {
        checkpoint(written.load(Ordering::Relaxed)).await;
    }
    result?;
    durable?;
    let size = written.load(Ordering::Relaxed);
    let digests = writer.hashes.finish().await.map_err(DownloadError::disk(&req.temp))?;
    verify(req.object, size, digests.md5.as_deref())?;
    Ok(Downloaded {
        sha256: digests.sha256,
        fetched: size - start,
        whole: false,
    })
}

/// An object fetched whole with its first request: hashed, written and (unless the
/// filesystem's flush is shared, which the placement then asks for) fsynced in one trip to
/// a blocking thread.
async fn store_whole(req: &Request<'_>) -> Result<Downloaded, DownloadError> {
    let body = req.prefix.clone();
    let temp = req.temp.clone();
    let with_md5 = etag_is_md5(&req.object.etag);
    let fsync = !req.flush.is_shared().await;
    let digests = tokio::task::spawn_blocking(move || -> std::io::Result<Digests> {
        let digests = Digests::of(&body, with_md5);
        let mut file = std::fs::File::create(&temp)?;
        std::io::Write::write_all(&mut file, &body)?;
        crate::fault::bytes(body.len() as u64);
        if fsync {
            file.sync_data()?;
        }
        Ok(digests)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|written| written)
    .map_err(DownloadError::disk(&req.temp))?;
    let size = req.prefix.len() as u64;
    req.written.store(size, Ordering::Relaxed);
    verify(req.object, size, digests.md5.as_deref())?;
    Ok(Downloaded {
        sha256: digests.sha256,
        fetched: size,
        whole: true,
    })
}

/// Makes `file`'s directory entry durable: an fsync of its directory.
async fn sync_parent(file: &Path) -> Result<(), DownloadError> {
    let dir = file.parent().expect("temp files live in a directory");
    let handle = tokio::fs::File::open(dir).await.map_err(DownloadError::disk(dir))?;
    handle.sync_all().await.map_err(DownloadError::disk(dir))
}

async fn sync(writer: &mut HashingWriter, req: &Request<'_>) -> Result<(), DownloadError> {
    let temp = &req.temp;
    writer.inner.flush().await.map_err(DownloadError::disk(temp))?;
    req.flush
        .data(writer.inner.get_ref())
        .await
        .map_err(DownloadError::disk(temp))
}

async fn fetch_segments(
    req: &Request<'_>,
    writer: &mut HashingWriter,
    written: &Arc<AtomicU64>,
    checkpoint: Checkpoint<'_>,
) -> Result<(), DownloadError> {
    let total = req.object.size;
    loop {
        let from = written.load(Ordering::Relaxed);
        if from >= total {
            return Ok(());
        }
        let to = (from + SEGMENT).min(total) - 1;
        let get = req.storage.download(req.key, &req.object.etag, from, Some(to), writer);
        tokio::select! {
            res = get => res?,
            () = req.shutdown.cancelled() => return Err(DownloadError::Interrupted),
            () = stalled(written) => return Err(DownloadError::Stalled),
        }
        let got = written.load(Ordering::Relaxed);
        if got != to + 1 {
            return Err(DownloadError::SizeMismatch {
                expected: to + 1,
                actual: got,
            });
        }
        if got < total {
            sync(writer, req).await?;
            checkpoint(got).await;
        }
    }
}

/// Resolves once `written` has not moved for [`STALL`].
async fn stalled(written: &AtomicU64) {
    let mut last = written.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(STALL).await;
        let now = written.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Logs bytes, rate and ETA every few seconds while a transfer runs.
fn watch_progress(log: slog::Logger, written: Arc<AtomicU64>, start: u64, total: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let began = Instant::now();
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            let done = written.load(Ordering::Relaxed);
            let secs = began.elapsed().as_secs_f64().max(0.001);
            let rate = (done - start) as f64 / secs;
            let eta = if rate > 0.0 {
                (total.saturating_sub(done)) as f64 / rate
            } else {
                f64::INFINITY
            };
            slog::info!(log, "transfer progress";
                "stage" => "downloading", "bytes" => done, "total" => total,
                "rate_bytes_per_s" => rate as u64, "eta_s" => eta.min(1e9) as u64,
                "elapsed_ms" => began.elapsed().as_millis() as u64);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(size: u64, etag: &str) -> ObjectInfo {
        ObjectInfo {
            size,
            etag: etag.into(),
            content_type: None,
        }
    }

    #[test]
    fn single_part_etags_are_checked_multipart_ones_only_by_size() {
        let md5 = "0cc175b9c0f1b6a831c399e269772661";
        assert!(verify(&object(1, md5), 1, Some(md5)).is_ok());
        assert!(matches!(
            verify(&object(1, md5), 1, Some("ffff")).unwrap_err(),
            DownloadError::ChecksumMismatch { .. }
        ));
        assert!(matches!(
            verify(&object(2, md5), 1, Some(md5)).unwrap_err(),
            DownloadError::SizeMismatch { .. }
        ));
        assert!(verify(&object(1, "abcdef-3"), 1, None).is_ok());
        assert!(etag_is_md5(md5));
        assert!(!etag_is_md5("abc-2"));
    }
}
