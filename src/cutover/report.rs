//! `r2-sync shadow-report`: every shadow copy beside the old service's copy of the same
//! media, by size and SHA-256, and every file only one of them has. Read-only everywhere.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{sha256_file, ArchivedRows, Progress};
use crate::archive;
use crate::config::Config;
use crate::db::{names, Db, MediaRow};
use crate::state::{Entry, Ledger, LedgerError};

/// What one media's comparison found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Finding {
    Identical {
        media_id: i64,
        path: String,
        size: u64,
        sha256: String,
    },
    Different {
        media_id: i64,
        shadow_path: String,
        old_path: String,
        shadow_size: u64,
        shadow_sha256: String,
        old_size: u64,
        old_sha256: String,
    },
    /// The old copy exists but cannot be read: nothing is proven.
    Unreadable { media_id: i64, path: String, error: String },
    /// Not (yet) archived by the old service.
    OnlyInShadow { media_id: i64, path: String },
    /// Archived by the old service, with no shadow copy: why, as the ledger says.
    OnlyInOld {
        media_id: i64,
        old_path: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub identical: u64,
    pub different: u64,
    pub unreadable: u64,
    pub only_in_shadow: u64,
    pub only_in_old: u64,
}

impl Summary {
    fn count(&mut self, f: &Finding) {
        match f {
            Finding::Identical { .. } => self.identical += 1,
            Finding::Different { .. } => self.different += 1,
            Finding::Unreadable { .. } => self.unreadable += 1,
            Finding::OnlyInShadow { .. } => self.only_in_shadow += 1,
            Finding::OnlyInOld { .. } => self.only_in_old += 1,
        }
    }

    /// Nothing differs and nothing could not be checked.
    pub fn clean(&self) -> bool {
        self.different == 0 && self.unreadable == 0
    }
}

/// What a shadow copy's sidecar says of it.
#[derive(Debug, Deserialize)]
struct ShadowFacts {
    media_id: i64,
    size: u64,
    sha256: String,
}

/// Where the ledger's reasons come from: its file, or the running process that holds it.
pub enum Reasons {
    Ledger(Ledger),
    Running(u16),
    None(String),
}

impl Reasons {
    pub fn open(cfg: &Config) -> Self {
        let path = cfg.state_dir.join(crate::context::LEDGER_FILE);
        if !path.exists() {
            return Reasons::None(format!("no ledger at {}", path.display()));
        }
        match Ledger::open_read_only(&path) {
            Ok(ledger) => Reasons::Ledger(ledger),
            Err(LedgerError::InUse { .. }) => Reasons::Running(cfg.server.health_port),
            Err(e) => Reasons::None(e.to_string()),
        }
    }

    async fn entry(&self, media_id: i64) -> Result<Option<Entry>, String> {
        match self {
            Reasons::Ledger(ledger) => ledger.get(media_id as u64).map_err(|e| e.to_string()),
            Reasons::Running(port) => {
                let path = format!("/status?media_id={media_id}");
                let (code, body) = crate::health_client::local_get(*port, &path)
                    .await
                    .map_err(|e| format!("the ledger is in use and /status on port {port}: {e}"))?;
                if code != 200 {
                    return Err(format!("/status on port {port} answered {code}"));
                }
                let line = body.split(|b| *b == b'\n').find(|l| !l.is_empty());
                line.map(serde_json::from_slice).transpose().map_err(|e| e.to_string())
            }
            Reasons::None(why) => Err(why.clone()),
        }
    }

    async fn reason(&self, media_id: i64) -> String {
        match self.entry(media_id).await {
            Ok(Some(e)) => match &e.error {
                Some(error) => format!("{}: {error}", e.stage()),
                None => format!("{} in the ledger", e.stage()),
            },
            Ok(None) => "r2-sync never took it (the old service archived it first)".into(),
            Err(e) => format!("ledger unreadable: {e}"),
        }
    }
}

/// Every sidecar under `dir` (hidden directories, such as the temp files', skipped), walked
/// one directory at a time.
fn sidecars(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let mut pending = vec![dir.to_path_buf()];
    let mut files = Vec::new().into_iter();
    std::iter::from_fn(move || loop {
        if let Some(file) = files.next() {
            return Some(file);
        }
        let dir = pending.pop()?;
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found = Vec::new();
        for entry in read.filter_map(Result::ok) {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            match entry.file_type() {
                Ok(t) if t.is_dir() && !hidden => pending.push(path),
                Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "json") => found.push(path),
                _ => {}
            }
        }
        found.sort();
        files = found.into_iter();
    })
}

/// The file a sidecar describes (its path without `.json`).
fn described(sidecar: &Path) -> PathBuf {
    sidecar.with_extension("")
}

/// Where the old service keeps `row`'s copy: the row's own `archive_path` when it archived
/// it, else the shadow copy's relative path under the archive.
fn old_copy(archive_dir: &Path, row: Option<&MediaRow>, shadow_rel: &Path) -> Option<PathBuf> {
    let recorded = row
        .filter(|r| r.status == names::STATUS_ARCHIVED)
        .and_then(|r| r.archive_path.as_deref())
        .map(Path::new)
        .filter(|rel| archive::is_contained(rel));
    Some(archive_dir.join(recorded.unwrap_or(shadow_rel))).filter(|p| p.is_file())
}

/// Compares one shadow copy with the old one.
async fn compare(cfg: &Config, db: &Db, shadow_root: &Path, sidecar: &Path) -> Option<Finding> {
    let facts: ShadowFacts = serde_json::from_slice(&std::fs::read(sidecar).ok()?).ok()?;
    let file = described(sidecar);
    if !file.is_file() {
        return None;
    }
    let rel = file.strip_prefix(shadow_root).ok()?.to_path_buf();
    let row = db.row(facts.media_id).await.ok().flatten();
    let shown = |p: &Path| p.display().to_string();
    let Some(old) = old_copy(&cfg.archive_dir, row.as_ref(), &rel) else {
        return Some(Finding::OnlyInShadow {
            media_id: facts.media_id,
            path: shown(&file),
        });
    };
    let hashed = {
        let old = old.clone();
        tokio::task::spawn_blocking(move || sha256_file(&old, None)).await
    };
    Some(match hashed {
        Ok(Ok((size, sha))) if size == facts.size && sha.eq_ignore_ascii_case(&facts.sha256) => Finding::Identical {
            media_id: facts.media_id,
            path: shown(&old),
            size,
            sha256: sha,
        },
        Ok(Ok((size, sha))) => Finding::Different {
            media_id: facts.media_id,
            shadow_path: shown(&file),
            old_path: shown(&old),
            shadow_size: facts.size,
            shadow_sha256: facts.sha256,
            old_size: size,
            old_sha256: sha,
        },
        Ok(Err(e)) => Finding::Unreadable {
            media_id: facts.media_id,
            path: shown(&old),
            error: e.to_string(),
        },
        Err(e) => Finding::Unreadable {
            media_id: facts.media_id,
            path: shown(&old),
            error: e.to_string(),
        },
    })
}

/// Runs the comparison, calling `each` with every finding as it is made; the totals.
pub async fn run(cfg: &Config, db: &Db, reasons: &Reasons, mut each: impl FnMut(&Finding)) -> Result<Summary, String> {
    let shadow = cfg
        .sync
        .shadow_dir
        .clone()
        .ok_or("SHADOW_DIR is not set: it names the directory the shadow run archived into")?;
    if !shadow.is_dir() {
        return Err(format!("SHADOW_DIR {} is not a directory", shadow.display()));
    }
    let mut summary = Summary::default();
    let mut seen = HashSet::new();
    let mut progress = Progress::new("shadow-report");
    for sidecar in sidecars(&shadow) {
        let Some(finding) = compare(cfg, db, &shadow, &sidecar).await else {
            continue;
        };
        let id = match &finding {
            Finding::Identical { media_id, size, .. } => {
                progress.add(*size);
                *media_id
            }
            Finding::Different { media_id, .. }
            | Finding::Unreadable { media_id, .. }
            | Finding::OnlyInShadow { media_id, .. }
            | Finding::OnlyInOld { media_id, .. } => *media_id,
        };
        seen.insert(id);
        summary.count(&finding);
        each(&finding);
    }
    let mut rows = ArchivedRows::new(db);
    while let Some(row) = rows.next().await.map_err(|e| format!("PostgreSQL: {e}"))? {
        if seen.contains(&row.id) {
            continue;
        }
        let finding = Finding::OnlyInOld {
            media_id: row.id,
            old_path: row.archive_path.clone().unwrap_or_default(),
            reason: reasons.reason(row.id).await,
        };
        summary.count(&finding);
        each(&finding);
    }
    Ok(summary)
}

/// One finding for a human (identical ones are only counted).
pub fn line(f: &Finding) -> Option<String> {
    match f {
        Finding::Identical { .. } => None,
        Finding::Different {
            media_id,
            shadow_path,
            old_path,
            shadow_size,
            shadow_sha256,
            old_size,
            old_sha256,
        } => Some(format!(
            "DIFFERENT      {media_id:>9}  shadow {shadow_path} ({shadow_size} bytes, sha256 {shadow_sha256})  \
             old {old_path} ({old_size} bytes, sha256 {old_sha256})"
        )),
        Finding::Unreadable { media_id, path, error } => {
            Some(format!("UNREADABLE     {media_id:>9}  old {path}: {error}"))
        }
        Finding::OnlyInShadow { media_id, path } => Some(format!("only in shadow {media_id:>9}  {path}")),
        Finding::OnlyInOld {
            media_id,
            old_path,
            reason,
        } => Some(format!("only in old    {media_id:>9}  {old_path}  ({reason})")),
    }
}

pub fn render_summary(s: &Summary) -> String {
    format!(
        "{} identical, {} different, {} unreadable, {} only in the shadow directory, {} only in the old archive",
        s.identical, s.different, s.unreadable, s.only_in_shadow, s.only_in_old
    )
}
