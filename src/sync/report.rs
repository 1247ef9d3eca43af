//! How a file's turn in a pass ended, and what a pass reports of all its files.

use std::time::Duration;

use serde::Serialize;

use crate::activity::PassRecord;

/// How one file's turn in a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOutcome {
    /// Archived, recorded and deleted from the bucket (or archived into the shadow dir).
    Archived,
    /// Archived and recorded; the bucket delete is owed and retried later.
    ArchivedDeleteOwed,
    /// Archived on disk; the database record is owed (PostgreSQL unreachable).
    ArchivedRecordOwed,
    /// Permanently failed (bad media, object gone…); the object stays in the bucket.
    Failed,
    /// The row stopped being approved; nothing archived is claimed, the object stays.
    Abandoned,
    /// A transient problem; retried on a later pass with backoff.
    Deferred,
    /// Not attempted this pass (backoff not over, shutdown).
    Skipped,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PassReport {
    pub claimed: usize,
    pub archived: usize,
    pub owed: usize,
    pub failed: usize,
    pub abandoned: usize,
    pub deferred: usize,
    pub skipped: usize,
    pub settled: usize,
    pub elapsed_ms: u64,
}

impl PassReport {
    pub(super) fn add(&mut self, outcome: FileOutcome) {
        match outcome {
            FileOutcome::Archived => self.archived += 1,
            FileOutcome::ArchivedDeleteOwed | FileOutcome::ArchivedRecordOwed => self.owed += 1,
            FileOutcome::Failed => self.failed += 1,
            FileOutcome::Abandoned => self.abandoned += 1,
            FileOutcome::Deferred => self.deferred += 1,
            FileOutcome::Skipped => self.skipped += 1,
        }
    }

    /// Every claimed file reached a final, successful state.
    pub fn all_succeeded(&self) -> bool {
        self.failed == 0 && self.deferred == 0 && self.owed == 0 && self.skipped == 0
    }
}

/// A pass as the dashboard's history lists it; None for a quiet one (nothing claimed,
/// settled or gone wrong), which would only crowd out the passes that did something.
pub(super) fn pass_record(report: &PassReport, started_at: u64, took: Duration, bytes: u64) -> Option<PassRecord> {
    let ok = report.all_succeeded();
    if ok && report.claimed == 0 && report.settled == 0 {
        return None;
    }
    let outcome = match (ok, report.claimed) {
        (true, _) => "ok",
        // A pass that could not claim counts itself deferred with nothing claimed.
        (false, 0) => "skipped",
        (false, _) => "partial",
    };
    Some(PassRecord {
        started_at,
        duration_ms: took.as_millis() as u64,
        claimed: report.claimed,
        archived: report.archived + report.owed,
        failed: report.failed,
        bytes,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{pass_record, FileOutcome, PassReport};

    #[test]
    fn the_history_leaves_out_quiet_passes_and_says_how_the_others_went() {
        let quiet = PassReport::default();
        assert!(pass_record(&quiet, 0, Duration::ZERO, 0).is_none());
        let mut partial = PassReport {
            claimed: 2,
            ..PassReport::default()
        };
        partial.add(FileOutcome::Archived);
        partial.add(FileOutcome::ArchivedDeleteOwed);
        assert!(!partial.all_succeeded());
        let shown = pass_record(&partial, 5, Duration::from_millis(1500), 10).unwrap();
        assert_eq!((shown.outcome, shown.archived, shown.duration_ms), ("partial", 2, 1500));
        let unclaimed = PassReport {
            deferred: 1,
            ..PassReport::default()
        };
        assert_eq!(
            pass_record(&unclaimed, 5, Duration::ZERO, 0).unwrap().outcome,
            "skipped"
        );
    }
}
