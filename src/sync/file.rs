//! One file's way through the pipeline, resuming from whatever stage the ledger holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slog::{debug, info, o, warn, Logger};
use tokio_util::sync::CancellationToken;

use super::download::{self, DownloadError};
use super::sidecar::{Facts, Sidecar};
use super::transfers::Transfers;
use super::{FileOutcome, Syncer};
use crate::archive;
use crate::db::MediaRow;
use crate::metrics::FailReason;
use crate::probe::{self, ProbeSummary};
use crate::state::{entry::now_secs, Entry, Persist, Stage};
use crate::storage::{ObjectKey, StorageError};

/// Objects up to this size (by the row's `file_size`) are fetched whole by one GET.
const WHOLE_IN_ONE_GET: u64 = 1 << 20;
/// Download attempts that end in a size or checksum mismatch before the file is failed.
const MAX_CORRUPT_DOWNLOADS: u32 = 3;
/// Transfer attempts in a row without progress, within one pass, before the file waits for
/// a later pass.
const IN_PASS_ATTEMPTS: u32 = 4;

/// Why a step stopped.
pub(super) enum Trouble {
    /// Never going to work: fail the row, for this reason (its label) and with this text.
    Permanent(FailReason, String),
    /// Try again later.
    Transient(String),
    /// The downloaded file is gone on our side (lost to a crash or power cut before it was
    /// durable, or removed): fetched again at once, once per pass, then [`Trouble::Transient`].
    Refetch(String),
    /// The archive's filesystem is full: no point retrying within this pass.
    DiskFull(String),
    /// Not attempted: this pass has given up on the bucket. No attempt is counted; the next
    /// pass tries again.
    Postponed(String),
    /// Shutdown: progress is checkpointed.
    Interrupted,
    /// The row is no longer approved.
    Abandon(String),
}

/// Whether the ledger holds a finished download (stage `downloaded`) before its placement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Download {
    /// Recorded, with its temp file durable: a crash resumes at the placement.
    Recorded,
    /// A small object fetched whole: placed first and recorded as `archived`, saving a
    /// flush and a ledger commit. A crash before that downloads it again, and the placement
    /// then finds its own earlier copy at the path (see [`Syncer::placed_copy`]).
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

/// Backoff after the `failures`-th failed attempt in a row (1 for the first): 30 s, doubling
/// per failure, capped at 6 h, ±20 % jitter.
pub fn backoff_secs(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(10);
    let base = 30u64.saturating_mul(1 << doublings).min(6 * 3600);
    let jitter = rand::random_range(0.8..1.2);
    (base as f64 * jitter) as u64
}

fn object_gone() -> Trouble {
    Trouble::Permanent(FailReason::ObjectGone, "object is gone from the bucket".into())
}

/// The object the entry is about. Its key was checked when the entry began; checked again
/// because a ledger written by an older version may hold one that names no object.
pub(super) fn object_key(entry: &Entry) -> Result<ObjectKey, Trouble> {
    ObjectKey::new(&entry.r2_key).map_err(|e| Trouble::Permanent(FailReason::Key, e.to_string()))
}

impl From<probe::ProbeError> for Trouble {
    fn from(e: probe::ProbeError) -> Self {
        if e.is_permanent() {
            Trouble::Permanent(FailReason::Ffprobe, e.to_string())
        } else {
            Trouble::Transient(e.to_string())
        }
    }
}

fn archive_trouble(e: archive::ArchiveError) -> Trouble {
    if e.is_disk_full() {
        Trouble::DiskFull(e.to_string())
    } else {
        Trouble::Transient(e.to_string())
    }
}

impl Syncer {
    /// Takes one claimed row as far as it goes; also says whether its lease may be released.
    pub(super) async fn process(
        &self,
        row: MediaRow,
        shutdown: &CancellationToken,
        transfers: &Transfers,
    ) -> (FileOutcome, bool) {
        let log = self.log.new(o!("media_id" => row.id));
        let Ok(id) = u64::try_from(row.id) else {
            warn!(log, "negative media id; skipped");
            return (FileOutcome::Skipped, false);
        };
        let mut entry = match self.ctx.ledger.get(id) {
            Ok(existing) => self.fresh_or_existing(existing, &row),
            Err(e) => {
                warn!(log, "ledger unreadable; skipped"; "error" => %e);
                return (FileOutcome::Skipped, false);
            }
        };
        if entry.retry_after > now_secs() {
            return (FileOutcome::Skipped, false);
        }
        let mut started = match (&row.object_key, entry.stage()) {
            // Before any request: a key that names no object fails the row, bucket untouched.
            (Err(e), Stage::Claimed) => Err(Trouble::Permanent(FailReason::Key, e.to_string())),
            _ => self.advance(&row, &mut entry, shutdown, transfers, &log).await,
        };
        if let Err(Trouble::Refetch(why)) = &started {
            // Nothing is wrong with the object: no back-off for our own loss.
            info!(log, "downloaded file lost; fetching it again now"; "stage" => entry.stage().as_str(), "error" => why);
            started = self.advance(&row, &mut entry, shutdown, transfers, &log).await;
        }
        let outcome = match started {
            Ok(outcome) => outcome,
            Err(trouble) => self.handle(trouble, &mut entry, &log).await,
        };
        (outcome, entry.stage().lease_done())
    }

    /// The ledger entry to continue with: a new one, or the existing one unless it ended
    /// (a row approved again after failing or being abandoned starts over).
    fn fresh_or_existing(&self, existing: Option<Entry>, row: &MediaRow) -> Entry {
        let id = row.id as u64;
        match existing {
            Some(e) if !e.stage().is_terminal() => e,
            Some(e) if e.stage() == Stage::Shadowed && self.ctx.cfg.sync.shadow_dir.is_some() => e,
            _ => {
                let mut e = Entry::new(id, row.r2_key.clone());
                e.content_type = Some(row.content_type.clone());
                e.original_filename = Some(row.original_filename.clone());
                e
            }
        }
    }

    async fn save(&self, entry: &mut Entry, stage: Stage, log: &Logger) -> Result<(), Trouble> {
        self.commit_stage(entry, stage).await?;
        info!(log, "stage"; "stage" => stage.as_str(), "bytes" => entry.bytes_done);
        Ok(())
    }

    /// [`Self::save`] for a caller that logs the event itself.
    async fn commit_stage(&self, entry: &mut Entry, stage: Stage) -> Result<(), Trouble> {
        self.ctx
            .ledger
            .set(entry, stage, Persist::Now)
            .await
            .map_err(|e| Trouble::Transient(e.to_string()))
    }

    async fn advance(
        &self,
        row: &MediaRow,
        entry: &mut Entry,
        shutdown: &CancellationToken,
        transfers: &Transfers,
        log: &Logger,
    ) -> Result<FileOutcome, Trouble> {
        let mut download = Download::Recorded;
        if matches!(entry.stage(), Stage::Claimed | Stage::Downloading) {
            if entry.archive_path.is_none() {
                // Chosen now so that the ledger write saying "downloaded" also reserves it.
                let rel = self.archive_path_for(row)?;
                entry.archive_path = Some(rel.display().to_string());
            }
            let transfer = Transfer {
                size_hint: row.file_size.and_then(|size| u64::try_from(size).ok()),
                shutdown,
                transfers,
                log,
            };
            download = self.fetch_with_retries(entry, transfer).await?;
        }
        if entry.stage() == Stage::Downloaded {
            let placed = self.place(row, entry, download, shutdown, log).await;
            if placed.is_err() && download == Download::Unrecorded {
                // Neither in the ledger nor surely on disk: a later attempt fetches it again.
                entry.restart_download();
            }
            placed?;
        }
        if entry.stage() == Stage::Shadowed {
            return Ok(FileOutcome::Archived);
        }
        if entry.stage() == Stage::Archived && !self.record(entry, log).await {
            return Ok(FileOutcome::ArchivedRecordOwed);
        }
        if entry.stage() == Stage::Abandoned {
            return Ok(FileOutcome::Abandoned);
        }
        if entry.stage() == Stage::Recorded && !self.delete_object(entry, log).await {
            return Ok(FileOutcome::ArchivedDeleteOwed);
        }
        Ok(if entry.stage() == Stage::Done {
            FileOutcome::Archived
        } else {
            FileOutcome::Skipped
        })
    }

    /// Where the entry's download goes: the path of its partial download (perhaps begun by an
    /// older version at another place), else one in this instance's own temp directory.
    fn temp_path(&self, entry: &Entry) -> Result<PathBuf, Trouble> {
        if let Some(existing) = entry.temp_path.as_deref().filter(|_| entry.bytes_done > 0) {
            return Ok(PathBuf::from(existing));
        }
        let dir = archive::temp_dir(self.ctx.cfg.target_dir(), self.ctx.db.owner())
            .map_err(|e| Trouble::Transient(e.to_string()))?;
        Ok(dir.join(format!("{}.part", entry.media_id)))
    }

    /// [`Self::fetch`], retried within the pass on transient trouble (a network blip should
    /// not cost a whole `SYNC_INTERVAL`) for as long as attempts make progress; after
    /// [`IN_PASS_ATTEMPTS`] attempts in a row without progress, later passes retry with
    /// [`backoff_secs`].
    async fn fetch_with_retries(&self, entry: &mut Entry, transfer: Transfer<'_>) -> Result<Download, Trouble> {
        let Transfer { shutdown, log, .. } = transfer;
        let mut fruitless = 0;
        loop {
            let before = entry.bytes_done;
            match self.fetch(entry, transfer).await {
                Err(Trouble::Transient(reason)) => {
                    fruitless = if entry.bytes_done > before { 0 } else { fruitless + 1 };
                    if fruitless >= IN_PASS_ATTEMPTS || self.ctx.storage.is_down() {
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

    /// Claimed/Downloading → Downloaded.
    async fn fetch(&self, entry: &mut Entry, transfer: Transfer<'_>) -> Result<Download, Trouble> {
        let Transfer {
            size_hint,
            shutdown,
            transfers,
            log,
        } = transfer;
        let key = object_key(entry)?;
        // A fresh download of what the row says is a small object starts with a GET of its
        // first bytes, which also tells what a HEAD would: one request instead of two (the
        // row's size may be wrong; a bigger object is continued from there).
        let small = entry.bytes_done == 0 && size_hint.is_some_and(|size| size <= WHOLE_IN_ONE_GET);
        let (answer, first_share) = if small {
            let share = transfers.small().await;
            (self.ctx.storage.get_start(&key, WHOLE_IN_ONE_GET).await, Some(share))
        } else {
            (self.ctx.storage.head(&key).await.map(|o| (o, Bytes::new())), None)
        };
        let (object, prefix) = match answer {
            Ok(answer) => answer,
            Err(StorageError::NotFound { .. }) => return Err(object_gone()),
            Err(e @ StorageError::Down { .. }) => return Err(Trouble::Postponed(e.to_string())),
            Err(e) => return Err(Trouble::Transient(e.to_string())),
        };
        let temp = self.temp_path(entry)?;
        if entry.etag.as_deref() != Some(&object.etag) || entry.size != Some(object.size) {
            if entry.bytes_done > 0 {
                info!(log, "object changed since the partial download; starting over"; "stage" => "downloading");
            }
            entry.restart_download();
            self.discard_temp(&temp, log);
            entry.etag = Some(object.etag.clone());
            entry.size = Some(object.size);
        }
        entry.temp_path = Some(temp.display().to_string());
        if entry.content_type.as_deref().is_none_or(str::is_empty) {
            entry.content_type = object.content_type.clone();
        }
        self.store_later(entry, Stage::Downloading, log).await;
        crate::fault::point("after_head");
        let snapshot = entry.clone();
        let ledger = &self.ctx.ledger;
        // Bytes the ledger holds as durable; what the next attempt may resume from.
        let durable = &std::sync::atomic::AtomicU64::new(entry.bytes_done);
        let checkpoint = move |bytes: u64| -> download::CheckpointFuture<'_> {
            let mut e = snapshot.clone();
            e.bytes_done = bytes;
            Box::pin(async move {
                match ledger.save(&mut e, Persist::Now).await {
                    Ok(()) => durable.store(bytes, std::sync::atomic::Ordering::Relaxed),
                    // The transfer goes on; a resume starts from the last checkpoint recorded.
                    Err(err) => warn!(log, "checkpoint not recorded"; "stage" => "downloading", "bytes" => bytes,
                        "error" => %err),
                }
            })
        };
        let started = std::time::Instant::now();
        let written = Arc::new(std::sync::atomic::AtomicU64::new(entry.bytes_done));
        let name = entry.original_filename.clone().unwrap_or_else(|| entry.r2_key.clone());
        let _shown = self
            .ctx
            .activity
            .transfer(entry.media_id, name, object.size, Arc::clone(&written));
        let request = download::Request {
            storage: &self.ctx.storage,
            flush: &self.flush,
            transfers,
            key: &key,
            object: &object,
            temp: temp.clone(),
            resume_from: entry.bytes_done,
            prefix,
            first_share,
            shutdown,
            log,
            written,
        };
        let result = {
            let _in_flight = self.ctx.metrics.transfer();
            download::run(request, &checkpoint).await
        };
        entry.bytes_done = durable.load(std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(done) => {
                entry.sha256 = Some(done.sha256);
                entry.bytes_done = object.size;
                info!(log, "downloaded"; "stage" => "downloaded", "bytes" => object.size, "fetched" => done.fetched,
                    "elapsed_ms" => started.elapsed().as_millis() as u64);
                let download = if done.whole {
                    self.ctx
                        .ledger
                        .set(entry, Stage::Downloaded, Persist::WithNext)
                        .await
                        .map_err(|e| Trouble::Transient(e.to_string()))?;
                    Download::Unrecorded
                } else {
                    self.save(entry, Stage::Downloaded, log).await?;
                    Download::Recorded
                };
                crate::fault::point("after_downloaded");
                Ok(download)
            }
            Err(e) => Err(self.download_trouble(e, entry, &temp, log)),
        }
    }

    fn download_trouble(&self, e: DownloadError, entry: &mut Entry, temp: &Path, log: &Logger) -> Trouble {
        let restart = |entry: &mut Entry| {
            self.discard_temp(temp, log);
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

    /// Downloaded → Archived (or Shadowed): check the row, validate, place, write the sidecar.
    async fn place(
        &self,
        row: &MediaRow,
        entry: &mut Entry,
        download: Download,
        shutdown: &CancellationToken,
        log: &Logger,
    ) -> Result<(), Trouble> {
        let shadow = self.ctx.cfg.sync.shadow_dir.is_some();
        if !shadow {
            if let Ok(current) = self.ctx.db.row(row.id).await {
                match current {
                    Some(r) if r.is_claimable() => {}
                    Some(r) => return Err(Trouble::Abandon(format!("row is now {:?}", r.status))),
                    None => return Err(Trouble::Abandon("row was deleted".into())),
                }
            }
        }
        let root = self.ctx.cfg.target_dir().to_path_buf();
        // The download is still the temp file, or already at its archive path: renamed there
        // before a crash that came before the next ledger write (which, for a download the
        // ledger never recorded, leaves the temp file of the new download beside it).
        let temp = entry.temp_path.clone().map(PathBuf::from).filter(|t| t.is_file());
        let path_free = entry
            .archive_path
            .as_ref()
            .map(Path::new)
            .is_some_and(|rel| archive::is_contained(rel) && archive::is_free(&root, rel));
        let placed = match temp {
            Some(_) if path_free => None,
            _ => self.placed_copy(entry).await,
        };
        let Some(file) = placed.clone().or_else(|| temp.clone()) else {
            return Err(self.download_again(entry, "downloaded file missing", log).await);
        };
        // ffprobe may take up to FFPROBE_TIMEOUT; a shutdown does not wait for it (the file is
        // validated again on restart).
        let summary = tokio::select! {
            summary = self.validate(&file) => summary,
            () = shutdown.cancelled() => return Err(Trouble::Interrupted),
        };
        // A file gone from under ffprobe says nothing about the media.
        let summary = match summary {
            Err(e) if !file.exists() => return Err(self.download_again(entry, &e.to_string(), log).await),
            summary => summary.map_err(Trouble::from)?,
        };
        let facts = Facts {
            size: entry.size.unwrap_or(entry.bytes_done),
            sha256: entry.sha256.as_deref().unwrap_or(""),
            etag: entry.etag.as_deref().unwrap_or(""),
            probe: summary.as_ref(),
        };
        let json = Sidecar::new(row, &facts).to_json();
        let size = facts.size;
        match placed {
            // `file` is the temp file.
            None => {
                if !path_free {
                    entry.archive_path = None;
                }
                self.move_into_archive(row, entry, download, file, json, log).await?
            }
            Some(placed) => {
                // Placed before a crash: made durable, its sidecar (re)written.
                tokio::task::spawn_blocking(move || {
                    if let Some(temp) = temp {
                        // Kept if it cannot be removed: start-up removes temp files nobody owns.
                        drop(archive::remove_temp(temp));
                    }
                    archive::settle_placed(&placed, &json)
                })
                .await
                .map_err(|e| Trouble::Transient(e.to_string()))?
                .map_err(archive_trouble)?;
                entry.temp_path = None;
            }
        }
        let rel = entry.archive_path.clone().expect("set above");
        crate::fault::point("after_sidecar");
        let stage = if shadow { Stage::Shadowed } else { Stage::Archived };
        self.commit_stage(entry, stage).await?;
        info!(log, "archived"; "stage" => stage.as_str(), "archive_path" => &rel, "bytes" => size);
        self.ctx.metrics.file_synced(entry.size.unwrap_or(entry.bytes_done));
        crate::fault::point("after_archived");
        Ok(())
    }

    /// Renames the file to the path reserved for it when the download began (recorded since
    /// `downloaded`, or else left to [`Download::Unrecorded`]'s rules), its sidecar beside it,
    /// so that a crash after the rename finds it. The caller clears a path taken since, which
    /// makes way for a new one, recorded first when the download is.
    async fn move_into_archive(
        &self,
        row: &MediaRow,
        entry: &mut Entry,
        download: Download,
        temp: PathBuf,
        sidecar: Vec<u8>,
        log: &Logger,
    ) -> Result<(), Trouble> {
        let root = self.ctx.cfg.target_dir().to_path_buf();
        let rel = match entry.archive_path.as_ref().map(PathBuf::from) {
            Some(rel) => rel,
            None => {
                let rel = archive::free_name(&root, &self.preferred_path(row)).map_err(archive_trouble)?;
                entry.archive_path = Some(rel.display().to_string());
                if download == Download::Recorded {
                    self.save(entry, Stage::Downloaded, log).await?;
                }
                rel
            }
        };
        crate::fault::point("before_rename");
        let durability = if self.flush.is_shared().await {
            archive::Durability::Caller
        } else {
            archive::Durability::Fsync
        };
        let placing = root.clone();
        tokio::task::spawn_blocking(move || archive::move_into(&placing, &temp, &rel, &sidecar, durability))
            .await
            .map_err(|e| Trouble::Transient(e.to_string()))?
            .map_err(archive_trouble)?;
        let flushed = self.flush.barrier().await;
        flushed
            .map_err(archive::ArchiveError::io("flush", &root))
            .map_err(archive_trouble)?;
        crate::fault::point("after_rename");
        // Recorded with the next stage change: a crash before it finds the file at the
        // recorded path and the temp file gone, which `place` handles.
        entry.temp_path = None;
        Ok(())
    }

    /// The archive path reserved for the download, if the file there is exactly the bytes
    /// downloaded (checked: the path may have held an earlier version of this media when it
    /// was reserved).
    async fn placed_copy(&self, entry: &Entry) -> Option<PathBuf> {
        let (Some(rel), Some(size), Some(sha256)) = (&entry.archive_path, entry.size, entry.sha256.clone()) else {
            return None;
        };
        if !archive::is_contained(Path::new(rel)) {
            return None;
        }
        let file = self.ctx.cfg.target_dir().join(rel);
        let checked = file.clone();
        let matches = tokio::task::spawn_blocking(move || archive::file_matches(&checked, size, &sha256)).await;
        matches.unwrap_or(false).then_some(file)
    }

    /// The path to reserve for this row's file, relative to the archive's root: free, or
    /// holding what may be this media's own unrecorded copy (see [`Download::Unrecorded`]).
    fn archive_path_for(&self, row: &MediaRow) -> Result<PathBuf, Trouble> {
        archive::reusable_name(self.ctx.cfg.target_dir(), &self.preferred_path(row), row.id).map_err(archive_trouble)
    }

    /// Where this row's file goes when nothing is in the way.
    fn preferred_path(&self, row: &MediaRow) -> PathBuf {
        archive::relative_path(
            row.id,
            row.approved_at.unwrap_or_else(chrono::Utc::now),
            &row.original_filename,
            &row.r2_key,
        )
    }

    async fn validate(&self, file: &Path) -> Result<Option<ProbeSummary>, probe::ProbeError> {
        if !self.ctx.cfg.sync.validate_media {
            return Ok(None);
        }
        probe::probe(&self.ctx.cfg.sync.ffprobe_path, file, self.ctx.cfg.sync.ffprobe_timeout)
            .await
            .map(Some)
    }

    /// The downloaded file is gone (`why`): the next attempt downloads it again.
    async fn download_again(&self, entry: &mut Entry, why: &str, log: &Logger) -> Trouble {
        entry.restart_download();
        entry.archive_path = None;
        if let Err(trouble) = self.save(entry, Stage::Claimed, log).await {
            return trouble;
        }
        Trouble::Refetch(format!("{why}; downloading again"))
    }

    /// Turns a stopped step into the ledger state and the pass outcome.
    async fn handle(&self, trouble: Trouble, entry: &mut Entry, log: &Logger) -> FileOutcome {
        match trouble {
            Trouble::Interrupted => {
                info!(log, "interrupted; progress kept"; "stage" => entry.stage().as_str(), "bytes" => entry.bytes_done);
                FileOutcome::Skipped
            }
            Trouble::Postponed(reason) => {
                debug!(log, "not attempted; waits for the next pass"; "stage" => entry.stage().as_str(), "error" => &reason);
                entry.error = Some(reason);
                FileOutcome::Deferred
            }
            Trouble::Transient(reason) | Trouble::Refetch(reason) | Trouble::DiskFull(reason) => {
                entry.attempts += 1;
                entry.retry_after = now_secs() + backoff_secs(entry.attempts);
                entry.error = Some(reason.clone());
                if let Err(e) = self.ctx.ledger.save(entry, Persist::Now).await {
                    // Unrecorded, the backoff starts over from the entry's last stored state.
                    warn!(log, "ledger write failed"; "stage" => entry.stage().as_str(), "error" => %e);
                }
                warn!(log, "attempt failed; will retry"; "stage" => entry.stage().as_str(), "error" => reason,
                    "retry_in_s" => entry.retry_after.saturating_sub(now_secs()));
                FileOutcome::Deferred
            }
            Trouble::Permanent(label, reason) => {
                self.ctx.metrics.file_failed(label);
                self.remove_temp(entry, log);
                entry.error = Some(reason);
                // Shadow mode writes nothing to PostgreSQL, so it owes it nothing either: the
                // verdict is kept for the operator, and a normal run will judge the file anew.
                let stage = if self.ctx.cfg.sync.shadow_dir.is_some() {
                    Stage::Shadowed
                } else {
                    Stage::FailPending
                };
                if self.save(entry, stage, log).await.is_err() {
                    return FileOutcome::Deferred;
                }
                if stage == Stage::FailPending {
                    crate::fault::point("after_fail_pending");
                    self.record_failure(entry, log).await;
                }
                FileOutcome::Failed
            }
            Trouble::Abandon(reason) => {
                self.remove_temp(entry, log);
                entry.error = Some(format!("{reason}; object left in the bucket"));
                if self.save(entry, Stage::Abandoned, log).await.is_err() {
                    // Not recorded: the next start-up's reconciliation abandons it again.
                    warn!(log, "ledger write failed"; "stage" => "abandoned", "error" => "abandoned entry not recorded");
                }
                FileOutcome::Abandoned
            }
        }
    }

    fn remove_temp(&self, entry: &mut Entry, log: &Logger) {
        if let Some(temp) = entry.temp_path.take() {
            self.discard_temp(Path::new(&temp), log);
        }
    }

    /// Removes a download's temp file; one that cannot be removed is logged and left to
    /// start-up, which removes temp files no entry owns.
    pub(super) fn discard_temp(&self, temp: &Path, log: &Logger) {
        if let Err(e) = archive::remove_temp(temp) {
            warn!(log, "temp file not removed; start-up removes it"; "path" => temp.display().to_string(),
                "error" => %e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{backoff_secs, FailReason, Trouble};
    use crate::probe::ProbeError;

    /// ffprobe's verdicts fail the file under one label; not being able to run it is retried.
    #[test]
    fn probe_errors_are_classified_once_by_type() {
        let file = "/a/.r2-sync-tmp/i/7.part".to_owned();
        let rejected = ProbeError::Rejected {
            file: file.clone(),
            reason: "size mismatch".into(),
        };
        let timeout = ProbeError::Timeout { file, secs: 120 };
        for verdict in [rejected, timeout] {
            assert!(matches!(
                Trouble::from(verdict),
                Trouble::Permanent(FailReason::Ffprobe, _)
            ));
        }
        let spawn = ProbeError::Spawn {
            program: "ffprobe".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(matches!(Trouble::from(spawn), Trouble::Transient(_)));
    }

    #[test]
    fn backoff_starts_at_30_s_and_doubles_to_6_h() {
        for (failures, base) in [
            (1, 30),
            (2, 60),
            (3, 120),
            (9, 7680),
            (10, 15360),
            (11, 21600),
            (40, 21600),
        ] {
            for _ in 0..50 {
                let secs = backoff_secs(failures);
                let (low, high) = (base * 8 / 10, base * 12 / 10);
                assert!(
                    (low..=high).contains(&secs),
                    "failure {failures}: {secs} s outside {low}..={high}"
                );
            }
        }
    }
}
