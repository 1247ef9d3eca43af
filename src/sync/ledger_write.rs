//! A file's stage changes written to the ledger, and logged, by every step of its way.

use slog::{info, warn, Logger};

use super::trouble::Trouble;
use crate::state::{Entry, Ledger, LedgerError, Persist, Stage};

/// Moves `entry` to `stage`, durably, and logs it; a write refused stops the step.
pub(super) async fn save(ledger: &Ledger, entry: &mut Entry, stage: Stage, log: &Logger) -> Result<(), Trouble> {
    commit(ledger, entry, stage).await?;
    info!(log, "stage"; "stage" => stage.as_str(), "bytes" => entry.bytes_done);
    Ok(())
}

/// [`save`] for a caller that logs the event itself.
pub(super) async fn commit(ledger: &Ledger, entry: &mut Entry, stage: Stage) -> Result<(), Trouble> {
    ledger
        .set(entry, stage, Persist::Now)
        .await
        .map_err(|e| Trouble::Transient(e.to_string()))
}

/// Moves `entry` to `stage`, durably; a write refused is logged, and the step goes on.
pub(super) async fn store(ledger: &Ledger, entry: &mut Entry, stage: Stage, log: &Logger) {
    stored(ledger.set(entry, stage, Persist::Now).await, stage, log);
}

/// [`store`] without waiting for the disk, for the stages whose loss in a crash is
/// harmless: Downloading (the orphaned temp file is removed at start-up and the download
/// starts over) and Done (it follows idempotent steps, the record's compare-and-set and
/// the delete, which then run again and find their work done). Saves every file two waits
/// for a ledger fsync.
pub(super) async fn store_later(ledger: &Ledger, entry: &mut Entry, stage: Stage, log: &Logger) {
    stored(ledger.set(entry, stage, Persist::Soon).await, stage, log);
}

/// Logs the outcome of a stage change.
pub(super) fn stored(result: Result<(), LedgerError>, stage: Stage, log: &Logger) {
    match result {
        Ok(()) => info!(log, "stage"; "stage" => stage.as_str()),
        Err(e) => warn!(log, "ledger write failed"; "stage" => stage.as_str(), "error" => %e),
    }
}
