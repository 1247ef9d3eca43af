//! The writes a file owes the outside world once it is safe on disk: the PostgreSQL record,
//! the bucket delete, the failure record. Applied in order and idempotently; when they cannot
//! be applied now, the ledger keeps them and a later pass settles them.

use serde_json::json;
use slog::{info, o, warn, Logger};

use super::Syncer;
use crate::db::Outcome;
use crate::state::{Entry, Persist, Stage};
use crate::storage::ObjectKey;

impl Syncer {
    fn details(entry: &Entry) -> serde_json::Value {
        json!({
            "archive_path": entry.archive_path,
            "sha256": entry.sha256,
            "size": entry.size,
            "etag": entry.etag,
            "r2_key": entry.r2_key,
            "r2_sync_version": env!("CARGO_PKG_VERSION"),
        })
    }

    async fn store(&self, entry: &mut Entry, stage: Stage, log: &Logger) {
        stored(self.ctx.ledger.set(entry, stage, Persist::Now).await, stage, log);
    }

    /// [`Self::store`] without waiting for the disk, for the stages whose loss in a crash is
    /// harmless: Downloading (the orphaned temp file is removed at start-up and the download
    /// starts over) and Done (it follows idempotent steps, the record's compare-and-set and
    /// the delete, which then run again and find their work done). Saves every file two waits
    /// for a ledger fsync.
    pub(super) async fn store_later(&self, entry: &mut Entry, stage: Stage, log: &Logger) {
        stored(self.ctx.ledger.set(entry, stage, Persist::Soon).await, stage, log);
    }

    /// Archived → Recorded (or Abandoned). False when PostgreSQL could not be reached or
    /// refused the write (the record stays owed).
    pub(super) async fn record(&self, entry: &mut Entry, log: &Logger) -> bool {
        let path = entry.archive_path.clone().unwrap_or_default();
        match self
            .ctx
            .db
            .record_archived(entry.media_id as i64, &path, &Self::details(entry))
            .await
        {
            Ok(Outcome::Applied | Outcome::AlreadyApplied) => {
                crate::fault::point("after_record");
                entry.error = None;
                // Not written: the delete follows at once and writes Done, or this stage if it
                // fails. A crash before that finds Archived and records again, which finds
                // the record applied.
                if let Err(e) = self.ctx.ledger.set(entry, Stage::Recorded, Persist::WithNext).await {
                    warn!(log, "ledger refused the move"; "stage" => "archived", "error" => %e);
                    return false;
                }
                crate::fault::point("after_recorded");
                true
            }
            Ok(Outcome::NotApproved { status }) => {
                entry.error = Some(format!(
                    "row is now {status:?}, not approved: archived copy kept at {path}, object left in the bucket"
                ));
                self.store(entry, Stage::Abandoned, log).await;
                true
            }
            Err(e) => {
                warn!(log, "record owed: {}", e.summary(); "stage" => "archived", "error" => %e);
                false
            }
        }
    }

    /// Recorded → Done. False when the bucket refused or could not be reached.
    pub(super) async fn delete_object(&self, entry: &mut Entry, log: &Logger) -> bool {
        let key = match ObjectKey::new(&entry.r2_key) {
            Ok(key) => key,
            // Only a ledger from before keys were checked can hold one: no request can name
            // that object without naming another, so the archived file is final as it is.
            Err(e) => {
                warn!(log, "delete refused: the key names no object; left in the bucket";
                    "stage" => "recorded", "error" => %e);
                entry.error = Some(format!("{e}; nothing deleted from the bucket"));
                self.store_later(entry, Stage::Done, log).await;
                return true;
            }
        };
        match self.ctx.storage.delete(&key).await {
            Ok(()) => {
                crate::fault::point("after_delete");
                entry.error = None;
                self.store_later(entry, Stage::Done, log).await;
                true
            }
            Err(e) => {
                warn!(log, "delete owed: bucket delete failed"; "stage" => "recorded", "error" => %e);
                entry.error = Some(e.to_string());
                stored(self.ctx.ledger.save(entry, Persist::Now).await, entry.stage(), log);
                false
            }
        }
    }

    /// FailPending → Failed (or Abandoned). False when PostgreSQL could not be reached.
    pub(super) async fn record_failure(&self, entry: &mut Entry, log: &Logger) -> bool {
        let reason = entry.error.clone().unwrap_or_default();
        let details = json!({ "reason": reason, "r2_key": entry.r2_key, "r2_sync_version": env!("CARGO_PKG_VERSION") });
        match self.ctx.db.record_failed(entry.media_id as i64, &details).await {
            Ok(Outcome::Applied | Outcome::AlreadyApplied) => {
                crate::fault::point("after_fail_record");
                warn!(log, "file failed; object kept in the bucket"; "stage" => "failed", "error" => reason);
                self.store(entry, Stage::Failed, log).await;
                true
            }
            Ok(Outcome::NotApproved { .. }) => {
                self.store(entry, Stage::Abandoned, log).await;
                true
            }
            Err(e) => {
                warn!(log, "failure record owed: {}", e.summary(); "stage" => "fail_pending", "error" => %e);
                false
            }
        }
    }

    /// Applies every write the ledger says is owed. Returns how many entries moved on.
    pub async fn settle_owed(&self) -> usize {
        let entries = match self.ctx.ledger.active() {
            Ok(all) => all,
            Err(e) => {
                warn!(self.log, "ledger unreadable; nothing settled"; "error" => %e);
                return 0;
            }
        };
        let mut settled = 0;
        let mut finished = Vec::new();
        for mut entry in entries {
            let log = self.log.new(o!("media_id" => entry.media_id));
            let moved = match entry.stage() {
                Stage::Archived => {
                    self.record(&mut entry, &log).await && {
                        entry.stage() != Stage::Recorded || self.delete_object(&mut entry, &log).await
                    }
                }
                Stage::Recorded => self.delete_object(&mut entry, &log).await,
                Stage::FailPending => self.record_failure(&mut entry, &log).await,
                _ => continue,
            };
            if moved {
                settled += 1;
                if entry.stage().lease_done() {
                    finished.push(entry.media_id as i64);
                }
            }
        }
        self.release(&finished).await;
        // What it settled is on disk before it says so (the last stages are queued).
        if let Err(e) = self.ctx.ledger.flush().await {
            warn!(self.log, "ledger write failed"; "error" => %e);
        }
        settled
    }
}

/// Logs the outcome of a stage change.
fn stored(result: Result<(), crate::state::LedgerError>, stage: Stage, log: &Logger) {
    match result {
        Ok(()) => info!(log, "stage"; "stage" => stage.as_str()),
        Err(e) => warn!(log, "ledger write failed"; "stage" => stage.as_str(), "error" => %e),
    }
}
