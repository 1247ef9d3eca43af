//! The writes a file owes the outside world once it is safe on disk: the PostgreSQL record,
//! the bucket delete, the failure record. Applied in order and idempotently; when they cannot
//! be applied now, the ledger keeps them and a later pass settles them.

use serde_json::json;
use slog::{o, warn, Logger};

use super::ledger_write;
use super::Syncer;
use crate::db::Outcome;
use crate::state::{Entry, Persist, Stage};
use crate::storage::ObjectKey;

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

/// Archived → Recorded (or Abandoned). False when PostgreSQL could not be reached or
/// refused the write (the record stays owed).
pub(super) async fn record(s: &Syncer, entry: &mut Entry, log: &Logger) -> bool {
    let path = entry.archive_path.clone().unwrap_or_default();
    match s
        .ctx
        .db
        .record_archived(entry.media_id as i64, &path, &details(entry))
        .await
    {
        Ok(Outcome::Applied | Outcome::AlreadyApplied) => {
            crate::fault::point("after_record");
            entry.error = None;
            // Not written: the delete follows at once and writes Done, or this stage if it
            // fails. A crash before that finds Archived and records again, which finds
            // the record applied.
            if let Err(e) = s.ctx.ledger.set(entry, Stage::Recorded, Persist::WithNext).await {
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
            ledger_write::store(&s.ctx.ledger, entry, Stage::Abandoned, log).await;
            true
        }
        Err(e) => {
            warn!(log, "record owed: {}", e.summary(); "stage" => "archived", "error" => %e);
            false
        }
    }
}

/// Recorded → Done. False when the bucket refused or could not be reached.
pub(super) async fn delete_object(s: &Syncer, entry: &mut Entry, log: &Logger) -> bool {
    let key = match ObjectKey::new(&entry.r2_key) {
        Ok(key) => key,
        // Only a ledger from before keys were checked can hold one: no request can name
        // that object without naming another, so the archived file is final as it is.
        Err(e) => {
            warn!(log, "delete refused: the key names no object; left in the bucket";
                "stage" => "recorded", "error" => %e);
            entry.error = Some(format!("{e}; nothing deleted from the bucket"));
            ledger_write::store_later(&s.ctx.ledger, entry, Stage::Done, log).await;
            return true;
        }
    };
    match s.ctx.storage.delete(&key).await {
        Ok(()) => {
            crate::fault::point("after_delete");
            entry.error = None;
            ledger_write::store_later(&s.ctx.ledger, entry, Stage::Done, log).await;
            true
        }
        Err(e) => {
            warn!(log, "delete owed: bucket delete failed"; "stage" => "recorded", "error" => %e);
            entry.error = Some(e.to_string());
            ledger_write::stored(s.ctx.ledger.save(entry, Persist::Now).await, entry.stage(), log);
            false
        }
    }
}

/// FailPending → Failed (or Abandoned). False when PostgreSQL could not be reached.
pub(super) async fn record_failure(s: &Syncer, entry: &mut Entry, log: &Logger) -> bool {
    let reason = entry.error.clone().unwrap_or_default();
    let details = json!({ "reason": reason, "r2_key": entry.r2_key, "r2_sync_version": env!("CARGO_PKG_VERSION") });
    match s.ctx.db.record_failed(entry.media_id as i64, &details).await {
        Ok(Outcome::Applied | Outcome::AlreadyApplied) => {
            crate::fault::point("after_fail_record");
            warn!(log, "file failed; object kept in the bucket"; "stage" => "failed", "error" => reason);
            ledger_write::store(&s.ctx.ledger, entry, Stage::Failed, log).await;
            true
        }
        Ok(Outcome::NotApproved { .. }) => {
            ledger_write::store(&s.ctx.ledger, entry, Stage::Abandoned, log).await;
            true
        }
        Err(e) => {
            warn!(log, "failure record owed: {}", e.summary(); "stage" => "fail_pending", "error" => %e);
            false
        }
    }
}

/// Applies every write the ledger says is owed. Returns how many entries moved on.
pub(super) async fn settle(s: &Syncer) -> usize {
    let entries = match s.ctx.ledger.active() {
        Ok(all) => all,
        Err(e) => {
            warn!(s.log, "ledger unreadable; nothing settled"; "error" => %e);
            return 0;
        }
    };
    let mut settled = 0;
    let mut finished = Vec::new();
    for mut entry in entries {
        let log = s.log.new(o!("media_id" => entry.media_id));
        let moved = match entry.stage() {
            Stage::Archived => {
                record(s, &mut entry, &log).await && {
                    entry.stage() != Stage::Recorded || delete_object(s, &mut entry, &log).await
                }
            }
            Stage::Recorded => delete_object(s, &mut entry, &log).await,
            Stage::FailPending => record_failure(s, &mut entry, &log).await,
            _ => continue,
        };
        if moved {
            settled += 1;
            if entry.stage().lease_done() {
                finished.push(entry.media_id as i64);
            }
        }
    }
    s.release(&finished).await;
    // What it settled is on disk before it says so (the last stages are queued).
    if let Err(e) = s.ctx.ledger.flush().await {
        warn!(s.log, "ledger write failed"; "error" => %e);
    }
    settled
}
