//! One media file's record in the ledger, and the stage machine it moves through.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where a file's sync stands. The order is the pipeline's order.
///
/// ```text
/// Claimed → Downloading → Downloaded → Archived → Recorded → Done
///     └──────────┴────────────┴─→ FailPending → Failed
///     └──────────┴────────────┴────────┴─→ Abandoned
/// ```
/// `Archived` and `FailPending` are the stages that owe PostgreSQL a write; `Recorded` owes
/// the bucket a delete. `Done`, `Failed`, `Abandoned` and `Shadowed` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The row is ours; nothing is on disk yet.
    Claimed,
    /// A temp file holds `bytes_done` bytes of the object with ETag `etag`.
    Downloading,
    /// The temp file is complete and its size and checksum verified.
    Downloaded,
    /// The file and its sidecar are durable at `archive_path`; PostgreSQL is owed the record.
    Archived,
    /// PostgreSQL says archived; the object may still be in the bucket.
    Recorded,
    /// The object is gone from the bucket. Nothing more to do.
    Done,
    /// A permanent failure; PostgreSQL is owed `status = failed` and an audit row.
    FailPending,
    /// PostgreSQL says failed; the object stays in the bucket for a human.
    Failed,
    /// The row stopped being `approved` (rejected, deleted) before it was recorded; the object
    /// stays in the bucket.
    Abandoned,
    /// Archived into `SHADOW_DIR` only (shadow mode); a normal run starts it afresh.
    Shadowed,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Claimed,
        Stage::Downloading,
        Stage::Downloaded,
        Stage::Archived,
        Stage::Recorded,
        Stage::Done,
        Stage::FailPending,
        Stage::Failed,
        Stage::Abandoned,
        Stage::Shadowed,
    ];

    /// The stages a new (`claimed`) entry moves through to reach `self`, the way the
    /// pipeline would (for tests and tools that build entries through the ledger).
    pub fn way_from_claimed(self) -> Vec<Stage> {
        use Stage::*;
        let pipeline = &Stage::ALL[..6];
        match self {
            FailPending => vec![FailPending],
            Failed => vec![FailPending, Failed],
            Abandoned => vec![Abandoned],
            Shadowed => vec![Shadowed],
            _ => pipeline[..=pipeline.iter().position(|s| *s == self).expect("a pipeline stage")].to_vec(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Claimed => "claimed",
            Stage::Downloading => "downloading",
            Stage::Downloaded => "downloaded",
            Stage::Archived => "archived",
            Stage::Recorded => "recorded",
            Stage::Done => "done",
            Stage::FailPending => "fail_pending",
            Stage::Failed => "failed",
            Stage::Abandoned => "abandoned",
            Stage::Shadowed => "shadowed",
        }
    }

    /// No more work will ever be done for this file by r2-sync.
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Done | Stage::Failed | Stage::Abandoned | Stage::Shadowed)
    }

    /// The archived file exists on disk and the ledger's `archive_path` points at it.
    /// Whether the row has an outcome in PostgreSQL (or never will from us), so that this
    /// instance's claim on it can go.
    pub fn lease_done(self) -> bool {
        self.is_terminal() || self == Stage::Recorded
    }

    pub fn has_archived_file(self) -> bool {
        matches!(self, Stage::Archived | Stage::Recorded | Stage::Done)
    }

    /// Whether the pipeline may move a file from `self` to `next`. Any stage may stay where
    /// it is (a retry); terminal stages never move, except `Shadowed`, which a normal run
    /// starts over.
    pub fn can_move_to(self, next: Stage) -> bool {
        use Stage::*;
        if self == next {
            return true;
        }
        match self {
            Claimed => matches!(next, Downloading | FailPending | Abandoned | Shadowed),
            Downloading => matches!(next, Claimed | Downloaded | FailPending | Abandoned | Shadowed),
            Downloaded => matches!(next, Claimed | Archived | FailPending | Abandoned | Shadowed),
            Archived => matches!(next, Recorded | Abandoned),
            Recorded => next == Done,
            FailPending => next == Failed,
            Shadowed => next == Claimed,
            Done | Failed | Abandoned => false,
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A stage change the stage machine does not allow (see [`Stage::can_move_to`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("media {media_id}: the ledger refuses to move it from {from} to {to}")]
pub struct IllegalMove {
    pub media_id: u64,
    pub from: Stage,
    pub to: Stage,
}

/// A file's record. Its stage is private: it moves only through [`crate::Ledger::set`], which
/// checks every move against [`Stage::can_move_to`], in release builds too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub media_id: u64,
    stage: Stage,
    /// The object key in the bucket (untrusted text from the database).
    pub r2_key: String,
    /// The object's ETag when the download started; a resume is guarded by it.
    #[serde(default)]
    pub etag: Option<String>,
    /// The object's size from the bucket.
    #[serde(default)]
    pub size: Option<u64>,
    /// Bytes of the object durably written to `temp_path`.
    #[serde(default)]
    pub bytes_done: u64,
    /// Absolute path of the partial download.
    #[serde(default)]
    pub temp_path: Option<String>,
    /// Path of the archived file, relative to the archive (or shadow) directory.
    #[serde(default)]
    pub archive_path: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub original_filename: Option<String>,
    /// Attempts that ended in a transient failure.
    #[serde(default)]
    pub attempts: u32,
    /// Do not retry before this time (seconds since epoch); backoff across passes.
    #[serde(default)]
    pub retry_after: u64,
    /// Why the file is failed, abandoned, or why the last attempt did not finish.
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Entry {
    pub fn new(media_id: u64, r2_key: impl Into<String>) -> Self {
        let now = now_secs();
        Self {
            media_id,
            stage: Stage::Claimed,
            r2_key: r2_key.into(),
            etag: None,
            size: None,
            bytes_done: 0,
            temp_path: None,
            archive_path: None,
            sha256: None,
            content_type: None,
            original_filename: None,
            attempts: 0,
            retry_after: 0,
            error: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// An entry read back from storage at `stage` (not a move).
    pub(crate) fn set_stage_from_storage(&mut self, stage: Stage) {
        self.stage = stage;
    }

    pub fn touch(&mut self) {
        self.updated_at = now_secs();
    }

    /// Where a stage changes, checked (callers: [`crate::Ledger::set`], and
    /// [`Self::restart_download`] for the download stages' way back to `claimed`).
    pub(crate) fn move_to(&mut self, to: Stage) -> Result<(), IllegalMove> {
        if !self.stage.can_move_to(to) {
            return Err(IllegalMove {
                media_id: self.media_id,
                from: self.stage,
                to,
            });
        }
        self.stage = to;
        self.touch();
        Ok(())
    }

    /// Forget any partial download: the next attempt starts from byte zero, from `claimed`
    /// (where the download stages may always return; an entry past them keeps its stage).
    pub fn restart_download(&mut self) {
        if self.stage.can_move_to(Stage::Claimed) {
            self.stage = Stage::Claimed;
        }
        self.etag = None;
        self.size = None;
        self.bytes_done = 0;
        self.sha256 = None;
    }
}
