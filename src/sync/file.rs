//! One file's way through the pipeline, from its claim to its delete from the bucket,
//! resuming from whatever stage the ledger holds: [`next_step`] decides each step, `fetch`,
//! `place` and `owed` take it, and a step that stops is turned here into the file's ledger
//! state and its outcome in the pass.

use std::path::Path;

use slog::{debug, info, o, warn, Logger};
use tokio_util::sync::CancellationToken;

use super::fetch::{discard_temp, fetch, Download};
use super::ledger_write;
use super::next::{entry_for, next_step, Step};
use super::owed;
use super::place::place;
use super::transfers::Transfers;
use super::trouble::{backoff_secs, Trouble};
use super::turn::Turn;
use super::{FileOutcome, Syncer};
use crate::db::MediaRow;
use crate::metrics::FailReason;
use crate::state::{entry::now_secs, Entry, Persist, Stage};

/// Takes one claimed row as far as it goes; also says whether its lease may be released.
pub(super) async fn process(
    s: &Syncer,
    row: MediaRow,
    shutdown: &CancellationToken,
    transfers: &Transfers,
) -> (FileOutcome, bool) {
    let log = s.log.new(o!("media_id" => row.id));
    let Ok(id) = u64::try_from(row.id) else {
        warn!(log, "negative media id; skipped");
        return (FileOutcome::Skipped, false);
    };
    let mut entry = match s.ctx.ledger.get(id) {
        Ok(existing) => entry_for(existing, &row, s.ctx.cfg.sync.shadow_dir.is_some()),
        Err(e) => {
            warn!(log, "ledger unreadable; skipped"; "error" => %e);
            return (FileOutcome::Skipped, false);
        }
    };
    if entry.retry_after > now_secs() {
        return (FileOutcome::Skipped, false);
    }
    let turn = Turn {
        s,
        row: &row,
        shutdown,
        transfers,
        log: &log,
    };
    let mut started = match (&row.object_key, entry.stage()) {
        // Before any request: a key that names no object fails the row, bucket untouched.
        (Err(e), Stage::Claimed) => Err(Trouble::Permanent(FailReason::Key, e.to_string())),
        _ => advance(turn, &mut entry).await,
    };
    if let Err(Trouble::Refetch(why)) = &started {
        // Nothing is wrong with the object: no back-off for our own loss.
        info!(log, "downloaded file lost; fetching it again now"; "stage" => entry.stage().as_str(), "error" => why);
        started = advance(turn, &mut entry).await;
    }
    let outcome = match started {
        Ok(outcome) => outcome,
        Err(trouble) => handle(s, trouble, &mut entry, &log).await,
    };
    (outcome, entry.stage().lease_done())
}

/// Takes the file's next steps until one ends its turn.
async fn advance(turn: Turn<'_>, entry: &mut Entry) -> Result<FileOutcome, Trouble> {
    let Turn { s, log, .. } = turn;
    let mut download = Download::Recorded;
    let mut last = None;
    loop {
        let step = next_step(entry.stage());
        // A step that left the stage as it was (the ledger refused the move) ends the turn:
        // a later pass takes the file up again.
        if last == Some(step) {
            return Ok(FileOutcome::Skipped);
        }
        last = Some(step);
        match step {
            Step::Fetch => download = fetch(turn, entry).await?,
            Step::Place => {
                let placed = place(turn, entry, download).await;
                if placed.is_err() && download == Download::Unrecorded {
                    // Neither in the ledger nor surely on disk: a later attempt fetches it again.
                    entry.restart_download();
                }
                placed?;
            }
            Step::Record => {
                if !owed::record(s, entry, log).await {
                    return Ok(FileOutcome::ArchivedRecordOwed);
                }
            }
            Step::Delete => {
                if !owed::delete_object(s, entry, log).await {
                    return Ok(FileOutcome::ArchivedDeleteOwed);
                }
            }
            Step::End(outcome) => return Ok(outcome),
        }
    }
}

/// Turns a stopped step into the ledger state and the pass outcome.
async fn handle(s: &Syncer, trouble: Trouble, entry: &mut Entry, log: &Logger) -> FileOutcome {
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
            back_off(s, reason, entry, log).await
        }
        Trouble::Permanent(label, reason) => fail(s, label, reason, entry, log).await,
        Trouble::Abandon(reason) => abandon(s, reason, entry, log).await,
    }
}

/// A transient problem: the file waits [`backoff_secs`] before its next attempt.
async fn back_off(s: &Syncer, reason: String, entry: &mut Entry, log: &Logger) -> FileOutcome {
    entry.attempts += 1;
    entry.retry_after = now_secs() + backoff_secs(entry.attempts);
    entry.error = Some(reason.clone());
    if let Err(e) = s.ctx.ledger.save(entry, Persist::Now).await {
        // Unrecorded, the backoff starts over from the entry's last stored state.
        warn!(log, "ledger write failed"; "stage" => entry.stage().as_str(), "error" => %e);
    }
    warn!(log, "attempt failed; will retry"; "stage" => entry.stage().as_str(), "error" => reason,
        "retry_in_s" => entry.retry_after.saturating_sub(now_secs()));
    FileOutcome::Deferred
}

/// A permanent failure: recorded in the ledger, then in PostgreSQL (or owed).
async fn fail(s: &Syncer, label: FailReason, reason: String, entry: &mut Entry, log: &Logger) -> FileOutcome {
    s.ctx.metrics.file_failed(label);
    remove_temp(entry, log);
    entry.error = Some(reason);
    // Shadow mode writes nothing to PostgreSQL, so it owes it nothing either: the
    // verdict is kept for the operator, and a normal run will judge the file anew.
    let stage = if s.ctx.cfg.sync.shadow_dir.is_some() {
        Stage::Shadowed
    } else {
        Stage::FailPending
    };
    if ledger_write::save(&s.ctx.ledger, entry, stage, log).await.is_err() {
        return FileOutcome::Deferred;
    }
    if stage == Stage::FailPending {
        crate::fault::point("after_fail_pending");
        owed::record_failure(s, entry, log).await;
    }
    FileOutcome::Failed
}

/// The row is no longer approved: the file is left where it is in the bucket.
async fn abandon(s: &Syncer, reason: String, entry: &mut Entry, log: &Logger) -> FileOutcome {
    remove_temp(entry, log);
    entry.error = Some(format!("{reason}; object left in the bucket"));
    if ledger_write::save(&s.ctx.ledger, entry, Stage::Abandoned, log)
        .await
        .is_err()
    {
        // Not recorded: the next start-up's reconciliation abandons it again.
        warn!(log, "ledger write failed"; "stage" => "abandoned", "error" => "abandoned entry not recorded");
    }
    FileOutcome::Abandoned
}

fn remove_temp(entry: &mut Entry, log: &Logger) {
    if let Some(temp) = entry.temp_path.take() {
        discard_temp(Path::new(&temp), log);
    }
}
