//! Downloaded → Archived (or Shadowed): the row checked again, the file validated, moved to
//! the path reserved for it with its sidecar beside it, and made durable.

use std::path::{Path, PathBuf};

use slog::{info, Logger};
use tokio_util::sync::CancellationToken;

use super::fetch::Download;
use super::ledger_write;
use super::next::{self, Found};
use super::sidecar::{Facts, Sidecar};
use super::trouble::{archive_trouble, Trouble};
use super::turn::Turn;
use super::Syncer;
use crate::archive;
use crate::db::MediaRow;
use crate::probe::{self, ProbeSummary};
use crate::state::{Entry, Stage};

/// Downloaded → Archived (or Shadowed): check the row, validate, place, write the sidecar.
pub(super) async fn place(turn: Turn<'_>, entry: &mut Entry, download: Download) -> Result<(), Trouble> {
    let Turn {
        s, row, shutdown, log, ..
    } = turn;
    let shadow = s.ctx.cfg.sync.shadow_dir.is_some();
    if !shadow {
        still_approved(s, row).await?;
    }
    let Some(found) = find_download(s, entry).await else {
        return Err(download_again(s, entry, "downloaded file missing", log).await);
    };
    let summary = validated(s, entry, found.file(), shutdown, log).await?;
    let facts = Facts {
        size: entry.size.unwrap_or(entry.bytes_done),
        sha256: entry.sha256.as_deref().unwrap_or(""),
        etag: entry.etag.as_deref().unwrap_or(""),
        probe: summary.as_ref(),
    };
    let json = Sidecar::new(row, &facts).to_json();
    let size = facts.size;
    match found {
        Found::Temp { temp, keep_path } => {
            if !keep_path {
                entry.archive_path = None;
            }
            move_into_archive(s, row, entry, download, temp, json, log).await?;
        }
        Found::Placed { placed, temp } => settle_placed(entry, placed, temp, json).await?,
    }
    let rel = entry.archive_path.clone().expect("set above");
    crate::fault::point("after_sidecar");
    let stage = if shadow { Stage::Shadowed } else { Stage::Archived };
    ledger_write::commit(&s.ctx.ledger, entry, stage).await?;
    info!(log, "archived"; "stage" => stage.as_str(), "archive_path" => &rel, "bytes" => size);
    s.ctx.metrics.file_synced(entry.size.unwrap_or(entry.bytes_done));
    crate::fault::point("after_archived");
    Ok(())
}

/// A row rejected or deleted since its claim is abandoned. One that cannot be read now is
/// placed all the same: recording it checks the row again.
async fn still_approved(s: &Syncer, row: &MediaRow) -> Result<(), Trouble> {
    match s.ctx.db.row(row.id).await {
        Ok(Some(r)) if r.is_claimable() => Ok(()),
        Ok(Some(r)) => Err(Trouble::Abandon(format!("row is now {:?}", r.status))),
        Ok(None) => Err(Trouble::Abandon("row was deleted".into())),
        Err(_) => Ok(()),
    }
}

/// Where the download is: still the temp file, or already at its archive path (see
/// [`Found`]); None when it is in neither place.
async fn find_download(s: &Syncer, entry: &Entry) -> Option<Found<PathBuf>> {
    let root = s.ctx.cfg.target_dir();
    let temp = entry.temp_path.clone().map(PathBuf::from).filter(|t| t.is_file());
    let path_free = entry
        .archive_path
        .as_ref()
        .map(Path::new)
        .is_some_and(|rel| archive::is_contained(rel) && archive::is_free(root, rel));
    let placed = match next::look_for_placed(temp.is_some(), path_free) {
        true => placed_copy(s, entry).await,
        false => None,
    };
    next::found(temp, path_free, placed)
}

/// ffprobe's verdict on the file. ffprobe may take up to FFPROBE_TIMEOUT; a shutdown does
/// not wait for it (the file is validated again on restart).
async fn validated(
    s: &Syncer,
    entry: &mut Entry,
    file: &Path,
    shutdown: &CancellationToken,
    log: &Logger,
) -> Result<Option<ProbeSummary>, Trouble> {
    let summary = tokio::select! {
        summary = validate(s, file) => summary,
        () = shutdown.cancelled() => return Err(Trouble::Interrupted),
    };
    // A file gone from under ffprobe says nothing about the media.
    match summary {
        Err(e) if !file.exists() => Err(download_again(s, entry, &e.to_string(), log).await),
        summary => summary.map_err(Trouble::from),
    }
}

async fn validate(s: &Syncer, file: &Path) -> Result<Option<ProbeSummary>, probe::ProbeError> {
    let sync = &s.ctx.cfg.sync;
    if !sync.validate_media {
        return Ok(None);
    }
    probe::judge_file(sync.probers(), file, sync.ffprobe_timeout)
        .await
        .map(Some)
}

/// A file placed before a crash: made durable, its sidecar (re)written.
async fn settle_placed(
    entry: &mut Entry,
    placed: PathBuf,
    temp: Option<PathBuf>,
    sidecar: Vec<u8>,
) -> Result<(), Trouble> {
    tokio::task::spawn_blocking(move || {
        if let Some(temp) = temp {
            // Kept if it cannot be removed: start-up removes temp files nobody owns.
            drop(archive::remove_temp(temp));
        }
        archive::settle_placed(&placed, &sidecar)
    })
    .await
    .map_err(|e| Trouble::Transient(e.to_string()))?
    .map_err(archive_trouble)?;
    entry.temp_path = None;
    Ok(())
}

/// Renames the file to the path reserved for it when the download began (recorded since
/// `downloaded`, or else left to [`Download::Unrecorded`]'s rules), its sidecar beside it,
/// so that a crash after the rename finds it. The caller clears a path taken since, which
/// makes way for a new one, recorded first when the download is.
async fn move_into_archive(
    s: &Syncer,
    row: &MediaRow,
    entry: &mut Entry,
    download: Download,
    temp: PathBuf,
    sidecar: Vec<u8>,
    log: &Logger,
) -> Result<(), Trouble> {
    let root = s.ctx.cfg.target_dir().to_path_buf();
    let rel = match entry.archive_path.as_ref().map(PathBuf::from) {
        Some(rel) => rel,
        None => {
            let rel = archive::free_name(&root, &preferred_path(row)).map_err(archive_trouble)?;
            entry.archive_path = Some(rel.display().to_string());
            if download == Download::Recorded {
                ledger_write::save(&s.ctx.ledger, entry, Stage::Downloaded, log).await?;
            }
            rel
        }
    };
    crate::fault::point("before_rename");
    let durability = if s.flush.is_shared().await {
        archive::Durability::Caller
    } else {
        archive::Durability::Fsync
    };
    let placing = root.clone();
    tokio::task::spawn_blocking(move || archive::move_into(&placing, &temp, &rel, &sidecar, durability))
        .await
        .map_err(|e| Trouble::Transient(e.to_string()))?
        .map_err(archive_trouble)?;
    let flushed = s.flush.barrier().await;
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
async fn placed_copy(s: &Syncer, entry: &Entry) -> Option<PathBuf> {
    let (Some(rel), Some(size), Some(sha256)) = (&entry.archive_path, entry.size, entry.sha256.clone()) else {
        return None;
    };
    if !archive::is_contained(Path::new(rel)) {
        return None;
    }
    let file = s.ctx.cfg.target_dir().join(rel);
    let checked = file.clone();
    let matches = tokio::task::spawn_blocking(move || archive::file_matches(&checked, size, &sha256)).await;
    matches.unwrap_or(false).then_some(file)
}

/// The path to reserve for this row's file, relative to the archive's root: free, or
/// holding what may be this media's own unrecorded copy (see [`Download::Unrecorded`]).
pub(super) fn archive_path_for(s: &Syncer, row: &MediaRow) -> Result<PathBuf, Trouble> {
    archive::reusable_name(s.ctx.cfg.target_dir(), &preferred_path(row), row.id).map_err(archive_trouble)
}

/// Where this row's file goes when nothing is in the way.
fn preferred_path(row: &MediaRow) -> PathBuf {
    archive::relative_path(
        row.id,
        row.approved_at.unwrap_or_else(chrono::Utc::now),
        &row.original_filename,
        &row.r2_key,
    )
}

/// The downloaded file is gone (`why`): the next attempt downloads it again.
async fn download_again(s: &Syncer, entry: &mut Entry, why: &str, log: &Logger) -> Trouble {
    entry.restart_download();
    entry.archive_path = None;
    if let Err(trouble) = ledger_write::save(&s.ctx.ledger, entry, Stage::Claimed, log).await {
        return trouble;
    }
    Trouble::Refetch(format!("{why}; downloading again"))
}
