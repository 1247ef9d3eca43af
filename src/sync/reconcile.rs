//! Start-up reconciliation: bring the ledger, the disk, PostgreSQL and the bucket into
//! agreement before the first pass. One log line per action.

use std::path::{Path, PathBuf};

use slog::{info, warn};

use super::fetch::discard_temp;
use super::{owed, Syncer};
use crate::archive;
use crate::state::{Entry, Persist, Stage};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub abandoned: usize,
    pub orphans_removed: usize,
    pub partials_reset: usize,
    pub owed_settled: usize,
}

pub(super) async fn reconcile(s: &Syncer) -> Reconciled {
    if s.ctx.cfg.sync.dry_run {
        info!(
            s.log,
            "dry run: start-up reconciliation skipped (it would change the ledger and temp files)"
        );
        return Reconciled::default();
    }
    let mut done = Reconciled {
        abandoned: abandon_unclaimable(s).await,
        ..Reconciled::default()
    };
    let entries = match s.ctx.ledger.active() {
        Ok(entries) => entries,
        Err(e) => {
            // Without the ledger no temp file can be told from an orphan: touch none.
            warn!(s.log, "reconcile: ledger unreadable; temp files and partial downloads left as they are";
                "error" => %e);
            return done;
        }
    };
    done.orphans_removed = remove_orphans(s, &entries);
    done.partials_reset = check_partials(s, entries).await;
    if s.ctx.cfg.sync.shadow_dir.is_none() {
        done.owed_settled = owed::settle(s).await;
    }
    info!(s.log, "reconcile finished"; "abandoned" => done.abandoned, "orphans_removed" => done.orphans_removed,
        "partials_reset" => done.partials_reset, "owed_settled" => done.owed_settled);
    done
}

/// Removes the temp files no live entry owns; how many.
fn remove_orphans(s: &Syncer, entries: &[Entry]) -> usize {
    let live: Vec<PathBuf> = entries
        .iter()
        .filter(|e| matches!(e.stage(), Stage::Claimed | Stage::Downloading | Stage::Downloaded))
        .filter_map(|e| e.temp_path.as_ref().map(PathBuf::from))
        .collect();
    let mut removed = 0;
    for orphan in orphan_temp_files(s.ctx.cfg.target_dir(), s.ctx.db.owner(), &live) {
        if std::fs::remove_file(&orphan).is_ok() {
            info!(s.log, "reconcile: removed orphan temp file"; "path" => orphan.display().to_string());
            removed += 1;
        }
    }
    removed
}

/// Partial downloads resume from the bytes the ledger recorded, unless their temp file
/// holds fewer: those start over. How many did.
async fn check_partials(s: &Syncer, entries: Vec<Entry>) -> usize {
    let mut reset = 0;
    for mut entry in entries.into_iter().filter(|e| e.stage() == Stage::Downloading) {
        let on_disk = entry
            .temp_path
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len());
        if on_disk.unwrap_or(0) < entry.bytes_done {
            info!(s.log, "reconcile: partial download shorter than recorded; restarting it";
                "media_id" => entry.media_id, "bytes" => entry.bytes_done);
            entry.bytes_done = 0;
            match s.ctx.ledger.save(&mut entry, Persist::Now).await {
                Ok(()) => reset += 1,
                Err(e) => warn!(s.log, "ledger write failed"; "media_id" => entry.media_id,
                    "stage" => "downloading", "error" => %e),
            }
        } else {
            info!(s.log, "reconcile: partial download will resume";
                "media_id" => entry.media_id, "bytes" => entry.bytes_done);
        }
    }
    reset
}

/// Files caught before archiving whose row stopped being approved while r2-sync was not
/// running (rejected, deleted): no pass will claim them again, so end them here and drop
/// their temp files. Skipped while PostgreSQL cannot be asked, and in shadow mode.
async fn abandon_unclaimable(s: &Syncer) -> usize {
    if s.ctx.cfg.sync.shadow_dir.is_some() {
        return 0;
    }
    let pending = match s.ctx.ledger.active() {
        Ok(entries) => entries,
        Err(e) => {
            warn!(s.log, "reconcile: ledger unreadable; nothing abandoned"; "error" => %e);
            return 0;
        }
    };
    let pending = pending
        .into_iter()
        .filter(|e| matches!(e.stage(), Stage::Claimed | Stage::Downloading | Stage::Downloaded));
    let mut abandoned = 0;
    for mut entry in pending {
        let reason = match s.ctx.db.row(entry.media_id as i64).await {
            Ok(Some(row)) if row.is_claimable() => continue,
            Ok(Some(row)) => format!("row is now {:?}", row.status),
            Ok(None) => "row was deleted".to_owned(),
            Err(_) => return abandoned,
        };
        if let Some(temp) = entry.temp_path.take() {
            discard_temp(Path::new(&temp), &s.log);
        }
        info!(s.log, "reconcile: row no longer approved; abandoned"; "media_id" => entry.media_id,
            "stage" => "abandoned", "error" => &reason);
        entry.error = Some(format!("{reason}; object left in the bucket"));
        match s.ctx.ledger.set(&mut entry, Stage::Abandoned, Persist::Now).await {
            Ok(()) => abandoned += 1,
            Err(e) => warn!(s.log, "ledger write failed"; "media_id" => entry.media_id,
                "stage" => "abandoned", "error" => %e),
        }
    }
    abandoned
}

/// Temp files that no live ledger entry owns: in this instance's own temp directory (other
/// instances sharing the archive have theirs), and files left directly in the temp directory
/// by versions before it had one per instance, once untouched for [`LEGACY_ORPHAN_AGE`] (an
/// older instance still running would be writing to its own).
fn orphan_temp_files(root: &Path, instance: &str, live: &[PathBuf]) -> Vec<PathBuf> {
    let own = files_in(&archive::instance_temp_dir(root, instance));
    let legacy = files_in(&root.join(archive::TEMP_DIR)).into_iter().filter(|p| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= LEGACY_ORPHAN_AGE)
    });
    own.into_iter().chain(legacy).filter(|p| !live.contains(p)).collect()
}

/// How long a temp file from before per-instance temp directories must sit untouched.
const LEGACY_ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect()
}
