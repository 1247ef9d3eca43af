//! Claimed/Downloading → Downloaded: the object's bytes into a temp file, verified, resumed
//! from the last checkpoint the ledger holds. The transfer itself is `download`; this is
//! what the file's ledger entry says of it before, during and after.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slog::{info, warn, Logger};
use tokio::sync::SemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::download::{self, DownloadError, Downloaded};
use super::ledger_write;
use super::place::archive_path_for;
use super::transfers::Transfers;
use super::trouble::{object_gone, object_key, Trouble};
use super::turn::Turn;
use super::Syncer;
use crate::archive;
use crate::metrics::FailReason;
use crate::state::{Entry, Ledger, Persist, Stage};
use crate::storage::{ObjectInfo, ObjectKey, StorageError};

/// Objects up to this size (by the row's `file_size`) are fetched whole by one GET.
const WHOLE_IN_ONE_GET: u64 = 1 << 20;
/// Download attempts that end in a size or checksum mismatch before the file is failed.
const MAX_CORRUPT_DOWNLOADS: u32 = 3;
/// Transfer attempts in a row without progress, within one pass, before the file waits for
/// a later pass.
const IN_PASS_ATTEMPTS: u32 = 4;

/// Whether the ledger holds a finished download (stage `downloaded`) before its placement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Download {
    /// Recorded, with its temp file durable: a crash resumes at the placement.
    Recorded,
    /// A small object fetched whole: placed first and recorded as `archived`, saving a
    /// flush and a ledger commit. A crash before that downloads it again, and the placement
    /// then finds its own earlier copy at the path (see `place::placed_copy`).
    Unrecorded,
}

/// What a transfer needs besides its ledger entry.
#[derive(Clone, Copy)]
struct Transfer<'a> {
    /// The row's `file_size`: what the backend was told at upload, maybe wrong.
    size_hint: Option<u64>,
    shutdown: &'a CancellationToken,
    /// Bounds the transfers under way (`SYNC_CONCURRENCY`).
    transfers: &'a Transfers,
    log: &'a Logger,
}

/// What the first request already fetched of the object.
struct Start<'a> {
    /// The object's first bytes (none after a HEAD), maybe all of it.
    prefix: Bytes,
    /// The share of a transfer slot the request for `prefix` took.
    share: Option<SemaphorePermit<'a>>,
}

/// Claimed/Downloading → Downloaded, with the archive path reserved first.
pub(super) async fn fetch(turn: Turn<'_>, entry: &mut Entry) -> Result<Download, Trouble> {
    let Turn {
        s,
        row,
        shutdown,
        transfers,
        log,
    } = turn;
    if entry.archive_path.is_none() {
        // Chosen now so that the ledger write saying "downloaded" also reserves it.
        let rel = archive_path_for(s, row)?;
        entry.archive_path = Some(rel.display().to_string());
    }
    let transfer = Transfer {
        size_hint: row.file_size.and_then(|size| u64::try_from(size).ok()),
        shutdown,
        transfers,
        log,
    };
    fetch_with_retries(s, entry, transfer).await
}

/// [`attempt`], retried within the pass on transient trouble (a network blip should not cost
/// a whole `SYNC_INTERVAL`) for as long as attempts make progress; after
/// [`IN_PASS_ATTEMPTS`] attempts in a row without progress, later passes retry with
/// `trouble::backoff_secs`.
async fn fetch_with_retries(s: &Syncer, entry: &mut Entry, transfer: Transfer<'_>) -> Result<Download, Trouble> {
    let Transfer { shutdown, log, .. } = transfer;
    let mut fruitless = 0;
    loop {
        let before = entry.bytes_done;
        match attempt(s, entry, transfer).await {
            Err(Trouble::Transient(reason)) => {
                fruitless = if entry.bytes_done > before { 0 } else { fruitless + 1 };
                if fruitless >= IN_PASS_ATTEMPTS || s.ctx.storage.is_down() {
                    return Err(Trouble::Transient(reason));
                }
                let pause = Duration::from_millis(250 << fruitless).mul_f64(rand::random_range(0.8..1.2));
                warn!(log, "transfer attempt failed; retrying"; "stage" => entry.stage().as_str(),
                    "error" => reason, "bytes" => entry.bytes_done, "retry_in_ms" => pause.as_millis() as u64);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return Err(Trouble::Interrupted),
                }
            }
            other => return other,
        }
    }
}

/// One attempt at Claimed/Downloading → Downloaded.
async fn attempt(s: &Syncer, entry: &mut Entry, transfer: Transfer<'_>) -> Result<Download, Trouble> {
    let log = transfer.log;
    let key = object_key(entry)?;
    let (object, start) = first_request(s, &key, entry, transfer).await?;
    let temp = temp_path(s, entry)?;
    begin(s, entry, &object, &temp, log).await;
    crate::fault::point("after_head");
    let started = Instant::now();
    match transfer_bytes(s, entry, &key, &object, start, temp.clone(), transfer).await {
        Ok(done) => finish(s, entry, object.size, done, started, log).await,
        Err(e) => Err(download_trouble(e, entry, &temp, log)),
    }
}

/// A HEAD of the object; or, for a fresh download of what the row says is a small object, a
/// GET of its first bytes, which also tells what a HEAD would: one request instead of two
/// (the row's size may be wrong; a bigger object is continued from there).
async fn first_request<'a>(
    s: &Syncer,
    key: &ObjectKey,
    entry: &Entry,
    transfer: Transfer<'a>,
) -> Result<(ObjectInfo, Start<'a>), Trouble> {
    let small = entry.bytes_done == 0 && transfer.size_hint.is_some_and(|size| size <= WHOLE_IN_ONE_GET);
    let (answer, share) = if small {
        let share = transfer.transfers.small().await;
        (s.ctx.storage.get_start(key, WHOLE_IN_ONE_GET).await, Some(share))
    } else {
        (s.ctx.storage.head(key).await.map(|o| (o, Bytes::new())), None)
    };
    match answer {
        Ok((object, prefix)) => Ok((object, Start { prefix, share })),
        Err(StorageError::NotFound { .. }) => Err(object_gone()),
        Err(e @ StorageError::Down { .. }) => Err(Trouble::Postponed(e.to_string())),
        Err(e) => Err(Trouble::Transient(e.to_string())),
    }
}

/// Stage Downloading: what the download is of (an object changed since a partial download
/// starts it over) and where its bytes go.
async fn begin(s: &Syncer, entry: &mut Entry, object: &ObjectInfo, temp: &Path, log: &Logger) {
    if entry.etag.as_deref() != Some(&object.etag) || entry.size != Some(object.size) {
        if entry.bytes_done > 0 {
            info!(log, "object changed since the partial download; starting over"; "stage" => "downloading");
        }
        entry.restart_download();
        discard_temp(temp, log);
        entry.etag = Some(object.etag.clone());
        entry.size = Some(object.size);
    }
    entry.temp_path = Some(temp.display().to_string());
    if entry.content_type.as_deref().is_none_or(str::is_empty) {
        entry.content_type = object.content_type.clone();
    }
    ledger_write::store_later(&s.ctx.ledger, entry, Stage::Downloading, log).await;
}

/// Runs the transfer, recording each durable checkpoint in the ledger; leaves in the entry
/// the bytes the ledger holds, from which the next attempt may resume.
async fn transfer_bytes(
    s: &Syncer,
    entry: &mut Entry,
    key: &ObjectKey,
    object: &ObjectInfo,
    start: Start<'_>,
    temp: PathBuf,
    transfer: Transfer<'_>,
) -> Result<Downloaded, DownloadError> {
    let checkpoints = Checkpoints {
        ledger: &s.ctx.ledger,
        snapshot: entry.clone(),
        durable: AtomicU64::new(entry.bytes_done),
        log: transfer.log,
    };
    let checkpoint = |bytes: u64| checkpoints.record(bytes);
    let written = Arc::new(AtomicU64::new(entry.bytes_done));
    let name = entry.original_filename.clone().unwrap_or_else(|| entry.r2_key.clone());
    let _shown = s
        .ctx
        .activity
        .transfer(entry.media_id, name, object.size, Arc::clone(&written));
    let request = download::Request {
        storage: &s.ctx.storage,
        flush: &s.flush,
        transfers: transfer.transfers,
        key,
        object,
        temp,
        resume_from: entry.bytes_done,
        prefix: start.prefix,
        first_share: start.share,
        shutdown: transfer.shutdown,
        log: transfer.log,
        written,
    };
    let result = {
        let _in_flight = s.ctx.metrics.transfer();
        download::run(request, &checkpoint).await
    };
    entry.bytes_done = checkpoints.durable.load(Ordering::Relaxed);
    result
}

/// A transfer's durable checkpoints, each recorded in the ledger as the entry it started
/// from with that many bytes done; `durable` is the last one the ledger took.
struct Checkpoints<'a> {
    ledger: &'a Ledger,
    snapshot: Entry,
    durable: AtomicU64,
    log: &'a Logger,
}

impl Checkpoints<'_> {
    fn record(&self, bytes: u64) -> download::CheckpointFuture<'_> {
        let mut entry = self.snapshot.clone();
        entry.bytes_done = bytes;
        Box::pin(async move {
            match self.ledger.save(&mut entry, Persist::Now).await {
                Ok(()) => self.durable.store(bytes, Ordering::Relaxed),
                // The transfer goes on; a resume starts from the last checkpoint recorded.
                Err(err) => warn!(self.log, "checkpoint not recorded"; "stage" => "downloading", "bytes" => bytes,
                    "error" => %err),
            }
        })
    }
}

/// Downloading → Downloaded, recorded at once unless the object came whole (see
/// [`Download::Unrecorded`]).
async fn finish(
    s: &Syncer,
    entry: &mut Entry,
    size: u64,
    done: Downloaded,
    started: Instant,
    log: &Logger,
) -> Result<Download, Trouble> {
    entry.sha256 = Some(done.sha256);
    entry.bytes_done = size;
    info!(log, "downloaded"; "stage" => "downloaded", "bytes" => size, "fetched" => done.fetched,
        "elapsed_ms" => started.elapsed().as_millis() as u64);
    let download = if done.whole {
        s.ctx
            .ledger
            .set(entry, Stage::Downloaded, Persist::WithNext)
            .await
            .map_err(|e| Trouble::Transient(e.to_string()))?;
        Download::Unrecorded
    } else {
        ledger_write::save(&s.ctx.ledger, entry, Stage::Downloaded, log).await?;
        Download::Recorded
    };
    crate::fault::point("after_downloaded");
    Ok(download)
}

/// What a failed transfer means for the file; a download that cannot go on from where it
/// stopped has its temp file removed and starts over.
fn download_trouble(e: DownloadError, entry: &mut Entry, temp: &Path, log: &Logger) -> Trouble {
    let restart = |entry: &mut Entry| {
        discard_temp(temp, log);
        entry.restart_download();
    };
    match e {
        DownloadError::Interrupted => Trouble::Interrupted,
        DownloadError::Storage(e @ StorageError::Down { .. }) => Trouble::Postponed(e.to_string()),
        DownloadError::Storage(StorageError::NotFound { .. }) => {
            restart(entry);
            object_gone()
        }
        DownloadError::Storage(StorageError::Changed { .. }) => {
            restart(entry);
            Trouble::Transient("object changed during the download; starting over".into())
        }
        DownloadError::SizeMismatch { .. } | DownloadError::ChecksumMismatch { .. } => {
            restart(entry);
            entry.attempts += 1;
            if entry.attempts >= MAX_CORRUPT_DOWNLOADS {
                let reason = match e {
                    DownloadError::SizeMismatch { .. } => FailReason::Size,
                    _ => FailReason::Checksum,
                };
                Trouble::Permanent(reason, format!("{e} (after {} downloads)", entry.attempts))
            } else {
                Trouble::Transient(e.to_string())
            }
        }
        DownloadError::Disk { .. } | DownloadError::Storage(StorageError::Local { .. }) => {
            let full = e.is_disk_full();
            restart(entry);
            if full {
                Trouble::DiskFull(e.to_string())
            } else {
                Trouble::Transient(e.to_string())
            }
        }
        other => Trouble::Transient(other.to_string()),
    }
}

/// Where the entry's download goes: the path of its partial download (perhaps begun by an
/// older version at another place), else one in this instance's own temp directory.
fn temp_path(s: &Syncer, entry: &Entry) -> Result<PathBuf, Trouble> {
    if let Some(existing) = entry.temp_path.as_deref().filter(|_| entry.bytes_done > 0) {
        return Ok(PathBuf::from(existing));
    }
    let dir =
        archive::temp_dir(s.ctx.cfg.target_dir(), s.ctx.db.owner()).map_err(|e| Trouble::Transient(e.to_string()))?;
    Ok(dir.join(format!("{}.part", entry.media_id)))
}

/// Removes a download's temp file; one that cannot be removed is logged and left to
/// start-up, which removes temp files no entry owns.
pub(super) fn discard_temp(temp: &Path, log: &Logger) {
    if let Err(e) = archive::remove_temp(temp) {
        warn!(log, "temp file not removed; start-up removes it"; "path" => temp.display().to_string(),
            "error" => %e);
    }
}
