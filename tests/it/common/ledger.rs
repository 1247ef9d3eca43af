//! Putting ledger entries where a scenario needs them, the way the pipeline would: every
//! stage change through `Ledger::set`, so a test cannot make an entry the pipeline could not.

use r2_sync::state::{Entry, Ledger, Stage};

/// Moves a new entry (at `claimed`) along the pipeline to `to` and stores it durably.
pub fn store_at(ledger: &Ledger, entry: &mut Entry, to: Stage) {
    assert_eq!(entry.stage(), Stage::Claimed, "a new entry");
    for stage in to.way_from_claimed() {
        ledger.set_blocking(entry, stage).unwrap();
    }
}
