//! `r2-sync adopt`: the files the old service archived (rows `archived` with a path, present
//! on disk, with no archived file in the ledger) are hashed, given the sidecar they lack (one that is there
//! is never replaced), and recorded as finished ledger entries, so that they are served from
//! the ledger, like the files r2-sync archived, with PostgreSQL down. A file that is missing
//! or unreadable is listed and changes nothing. Resumable: adopted rows are in the ledger,
//! and a run skips them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{sha256_file, ArchivedRows, Progress};
use crate::archive;
use crate::config::Config;
use crate::db::{Db, MediaRow};
use crate::state::{Entry, Ledger, Persist, Stage};
use crate::sync::sidecar::{Facts, Sidecar};

/// Ledger entries queued between waits for the disk.
const FLUSH_EVERY: u64 = 1000;

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Adopted {
    Adopted {
        media_id: i64,
        path: String,
        size: u64,
        sha256: String,
        /// `written` (it had none), `kept` (it had one that agrees), or `differs` (it has one
        /// that names other bytes: left as it is, for a human to look at).
        sidecar: String,
    },
    /// The row says archived, but its file cannot be read: nothing changed.
    Missing { media_id: i64, path: String, error: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub adopted: u64,
    pub already_known: u64,
    pub missing: u64,
    pub sidecars_written: u64,
    pub sidecars_differ: u64,
}

/// Runs the adoption, calling `each` with every row it adopted or could not; the totals.
pub async fn run(
    cfg: &Config,
    db: &Db,
    ledger: &Ledger,
    max_rate: Option<u64>,
    mut each: impl FnMut(&Adopted),
) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut progress = Progress::new("adopt");
    let mut rows = ArchivedRows::new(db);
    while let Some(row) = rows.next().await.map_err(|e| format!("PostgreSQL: {e}"))? {
        // Known: the ledger has the file archived (a shadowed, failed or abandoned entry is
        // replaced: the old service's copy is the one the row names).
        let known = ledger.get(row.id as u64).map_err(|e| e.to_string())?;
        if known.is_some_and(|e| e.stage().has_archived_file()) {
            summary.already_known += 1;
            continue;
        }
        let adopted = adopt_one(cfg, ledger, &row, max_rate).await?;
        match &adopted {
            Adopted::Adopted { size, sidecar, .. } => {
                summary.adopted += 1;
                summary.sidecars_written += u64::from(sidecar == "written");
                summary.sidecars_differ += u64::from(sidecar == "differs");
                progress.add(*size);
                if summary.adopted % FLUSH_EVERY == 0 {
                    ledger.flush().await.map_err(|e| e.to_string())?;
                }
            }
            Adopted::Missing { .. } => summary.missing += 1,
        }
        each(&adopted);
    }
    ledger.flush().await.map_err(|e| e.to_string())?;
    Ok(summary)
}

/// Hashes, gives a sidecar and records one row's file; `Err` only for a ledger that cannot
/// be written (which stops the run).
async fn adopt_one(cfg: &Config, ledger: &Ledger, row: &MediaRow, max_rate: Option<u64>) -> Result<Adopted, String> {
    let rel = row.archive_path.clone().unwrap_or_default();
    let missing = |error: String| Adopted::Missing {
        media_id: row.id,
        path: rel.clone(),
        error,
    };
    if !archive::is_contained(Path::new(&rel)) {
        return Ok(missing("archive_path is not a path inside the archive".into()));
    }
    let file = cfg.archive_dir.join(&rel);
    if !file.symlink_metadata().is_ok_and(|m| m.is_file()) {
        return Ok(missing("no such file in the archive".into()));
    }
    let hashed = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || sha256_file(&file, max_rate)).await
    };
    let (size, sha256) = match hashed {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Ok(missing(format!("unreadable: {e}"))),
        Err(e) => return Ok(missing(format!("unreadable: {e}"))),
    };
    let sidecar = give_sidecar(row, &file, size, &sha256).await;
    let mut entry = Entry::new(row.id as u64, row.r2_key.clone());
    entry.archive_path = Some(rel.clone());
    (entry.size, entry.bytes_done, entry.sha256) = (Some(size), size, Some(sha256.clone()));
    entry.content_type = Some(row.content_type.clone()).filter(|c| !c.is_empty());
    entry.original_filename = Some(row.original_filename.clone()).filter(|n| !n.is_empty());
    for stage in Stage::Done.way_from_claimed() {
        let persist = if stage == Stage::Done {
            Persist::Soon
        } else {
            Persist::WithNext
        };
        ledger
            .set(&mut entry, stage, persist)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Adopted::Adopted {
        media_id: row.id,
        path: rel,
        size,
        sha256,
        sidecar,
    })
}

/// The sidecar beside `file`: written when missing, never replaced. What was done.
async fn give_sidecar(row: &MediaRow, file: &Path, size: u64, sha256: &str) -> String {
    let path: PathBuf = archive::sidecar_path(file);
    if let Ok(existing) = std::fs::read(&path) {
        let said = serde_json::from_slice::<serde_json::Value>(&existing)
            .ok()
            .and_then(|v| v["sha256"].as_str().map(str::to_owned));
        return match said {
            Some(s) if s.eq_ignore_ascii_case(sha256) => "kept",
            _ => "differs",
        }
        .into();
    }
    let facts = Facts {
        size,
        sha256,
        etag: "",
        probe: None,
    };
    let json = Sidecar::new(row, &facts).to_json();
    let written = tokio::task::spawn_blocking(move || archive::write_atomic(&path, &json)).await;
    match written {
        Ok(Ok(())) => "written".into(),
        Ok(Err(e)) => format!("not written: {e}"),
        Err(e) => format!("not written: {e}"),
    }
}
