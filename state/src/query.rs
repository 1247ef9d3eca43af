//! Reading many entries: what `status` and `GET /status` ask for, read from only the tables
//! that can hold it, newest media first, stopping at the limit.

use redb::{ReadTransaction, ReadableTable, TableDefinition};

use crate::entry::{Entry, Stage};
use crate::tables::{self, Home, ACTIVE, DONE, ENDED};
use crate::{storage, Result};

/// Which entries to read. The default is every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only entries at these stages (empty: any).
    pub stages: Vec<Stage>,
    /// Only this media.
    pub media_id: Option<u64>,
    /// Only entries changed at or after this time (seconds since the Unix epoch).
    pub since: Option<u64>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl Query {
    fn wants_stage(&self, stage: Stage) -> bool {
        self.stages.is_empty() || self.stages.contains(&stage)
    }

    fn wants(&self, entry: &Entry) -> bool {
        self.wants_stage(entry.stage()) && self.since.is_none_or(|since| entry.updated_at >= since)
    }

    fn wants_home(&self, home: Home) -> bool {
        Stage::ALL
            .iter()
            .any(|&stage| Home::of(stage) == home && self.wants_stage(stage))
    }
}

/// Calls `each` with every entry `q` asks for (an unreadable record as its error) until it
/// returns false: entries in flight first, then ended ones, then done ones, each by media id
/// from the newest.
pub fn scan(txn: &ReadTransaction, q: &Query, mut each: impl FnMut(Result<Entry>) -> bool) -> Result<()> {
    if q.limit == Some(0) {
        return Ok(());
    }
    let mut left = q.limit.unwrap_or(usize::MAX);
    let mut give = |found: Result<Entry>| -> bool {
        if found.as_ref().is_ok_and(|e| !q.wants(e)) {
            return true;
        }
        left = left.saturating_sub(1);
        each(found) && left > 0
    };
    if let Some(id) = q.media_id {
        if let Some(found) = tables::get(txn, id).transpose() {
            give(found);
        }
        return Ok(());
    }
    let go_on = (!q.wants_home(Home::Active) || json_table(txn, ACTIVE, &mut give)?)
        && (!q.wants_home(Home::Ended) || json_table(txn, ENDED, &mut give)?);
    if go_on && q.wants_home(Home::Done) {
        let done = txn.open_table(DONE).map_err(storage("open done"))?;
        for row in done.iter().map_err(storage("iterate"))?.rev() {
            let (id, raw) = row.map_err(storage("iterate"))?;
            if !give(tables::decode_done(id.value(), raw.value())) {
                break;
            }
        }
    }
    Ok(())
}

/// False when `give` asked to stop.
fn json_table(
    txn: &ReadTransaction,
    table: TableDefinition<u64, &str>,
    give: &mut impl FnMut(Result<Entry>) -> bool,
) -> Result<bool> {
    let table = txn.open_table(table).map_err(storage("open table"))?;
    for row in table.iter().map_err(storage("iterate"))?.rev() {
        let (id, raw) = row.map_err(storage("iterate"))?;
        if !give(tables::decode_json(id.value(), raw.value())) {
            return Ok(false);
        }
    }
    Ok(true)
}
