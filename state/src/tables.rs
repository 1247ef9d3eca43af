//! The ledger's tables (format 2) and the one function that stores an entry in them.
//!
//! What is in flight is kept apart from what is finished, so that a pass, a scrape or a
//! start-up reads only what it needs however many files the archive holds:
//!
//! | table | key → value | holds |
//! |---|---|---|
//! | `active` | media id → JSON entry | every stage that still has work: claimed … recorded, fail_pending |
//! | `done` | media id → compact record ([`crate::done`]) | `done`: nearly every entry after a while |
//! | `ended` | media id → JSON entry | `failed`, `abandoned`, `shadowed`: kept whole, with their reasons |
//! | `path_index` | xxh3 of the archive path → media ids | the file server's lookup (the entry's own path confirms a hit) |
//! | `stage_counts` | stage name → entries | kept in step by every write |
//! | `meta` | `format` → 2 | the layout version |
//! | `damaged` | media id → raw bytes | records an older format held that could not be read |

use redb::{MultimapTableDefinition, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::entry::{Entry, Stage};
use crate::{done, storage, LedgerError, Result};

pub const ACTIVE: TableDefinition<u64, &str> = TableDefinition::new("active");
pub const DONE: TableDefinition<u64, &[u8]> = TableDefinition::new("done");
pub const ENDED: TableDefinition<u64, &str> = TableDefinition::new("ended");
/// Keyed by a hash, not the path: the path is in the entry already, and a million paths
/// twice would be a third of the file.
pub const PATHS: MultimapTableDefinition<u64, u64> = MultimapTableDefinition::new("path_index");
/// Format 1's path index (path → media id), dropped by the migration.
pub const V1_PATHS: TableDefinition<&str, u64> = TableDefinition::new("archive_paths");
pub const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("stage_counts");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const DAMAGED: TableDefinition<u64, &[u8]> = TableDefinition::new("damaged");

/// The layout this version writes.
pub const FORMAT: u64 = 2;

/// Which table holds an entry at `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    Active,
    Done,
    Ended,
}

impl Home {
    pub fn of(stage: Stage) -> Self {
        match stage {
            Stage::Done => Home::Done,
            s if s.is_terminal() => Home::Ended,
            _ => Home::Active,
        }
    }
}

pub fn corrupt(media_id: u64, reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt {
        media_id,
        reason: reason.to_string(),
    }
}

pub fn decode_json(media_id: u64, raw: &str) -> Result<Entry> {
    serde_json::from_str(raw).map_err(|e| corrupt(media_id, e))
}

pub fn decode_done(media_id: u64, raw: &[u8]) -> Result<Entry> {
    done::decode(media_id, raw).map_err(|e| corrupt(media_id, e))
}

fn to_json(entry: &Entry) -> String {
    serde_json::to_string(entry).expect("ledger entries always serialise")
}

/// Every table, open in one write transaction.
pub struct Tables<'t> {
    pub active: redb::Table<'t, u64, &'static str>,
    pub done: redb::Table<'t, u64, &'static [u8]>,
    pub ended: redb::Table<'t, u64, &'static str>,
    pub paths: redb::MultimapTable<'t, u64, u64>,
    pub counts: redb::Table<'t, &'static str, u64>,
    pub damaged: redb::Table<'t, u64, &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(Self {
            active: txn.open_table(ACTIVE).map_err(storage("open active"))?,
            done: txn.open_table(DONE).map_err(storage("open done"))?,
            ended: txn.open_table(ENDED).map_err(storage("open ended"))?,
            paths: txn.open_multimap_table(PATHS).map_err(storage("open paths"))?,
            counts: txn.open_table(COUNTS).map_err(storage("open counts"))?,
            damaged: txn.open_table(DAMAGED).map_err(storage("open damaged"))?,
        })
    }

    /// Stores `entry` in the table its stage belongs to, out of any other, keeping the path
    /// index and the counts in step.
    pub fn store(&mut self, entry: &Entry) -> Result<()> {
        let old = self.take(entry.media_id)?;
        match Home::of(entry.stage()) {
            Home::Active => self.active.insert(entry.media_id, to_json(entry).as_str()).map(drop),
            Home::Ended => self.ended.insert(entry.media_id, to_json(entry).as_str()).map(drop),
            Home::Done => self
                .done
                .insert(entry.media_id, done::encode(entry).as_slice())
                .map(drop),
        }
        .map_err(storage("insert"))?;
        self.count(entry.stage(), 1)?;
        let old_path = old.and_then(|(_, path)| path);
        if let Some(old_path) = old_path.filter(|p| Some(p) != entry.archive_path.as_ref()) {
            self.unindex(&old_path, entry.media_id)?;
        }
        if let Some(path) = &entry.archive_path {
            self.paths
                .insert(path_key(path), entry.media_id)
                .map_err(storage("index path"))?;
        }
        Ok(())
    }

    /// Removes the entry and its path from the index.
    pub fn remove(&mut self, media_id: u64) -> Result<()> {
        if let Some((_, Some(path))) = self.take(media_id)? {
            self.unindex(&path, media_id)?;
        }
        Ok(())
    }

    fn unindex(&mut self, path: &str, media_id: u64) -> Result<()> {
        self.paths
            .remove(path_key(path), media_id)
            .map(drop)
            .map_err(storage("unindex path"))
    }

    /// Takes the stored entry out of whichever table holds it: its stage (uncounted) and
    /// archive path. A damaged record is replaced: what is stored now is readable, and the
    /// stage it was counted at is unknown, so its count stays.
    fn take(&mut self, media_id: u64) -> Result<Option<(Stage, Option<String>)>> {
        let old = if let Some(raw) = self.active.remove(media_id).map_err(storage("remove"))? {
            decode_json(media_id, raw.value()).ok()
        } else if let Some(raw) = self.done.remove(media_id).map_err(storage("remove"))? {
            decode_done(media_id, raw.value()).ok()
        } else if let Some(raw) = self.ended.remove(media_id).map_err(storage("remove"))? {
            decode_json(media_id, raw.value()).ok()
        } else {
            self.damaged.remove(media_id).map_err(storage("remove"))?;
            return Ok(None);
        };
        let Some(old) = old else {
            return Ok(None);
        };
        self.count(old.stage(), -1)?;
        Ok(Some((old.stage(), old.archive_path)))
    }

    pub fn count(&mut self, stage: Stage, delta: i64) -> Result<()> {
        let now = self
            .counts
            .get(stage.as_str())
            .map_err(storage("read count"))?
            .map_or(0, |v| v.value());
        let next = now.saturating_add_signed(delta);
        self.counts
            .insert(stage.as_str(), next)
            .map_err(storage("write count"))?;
        Ok(())
    }
}

fn path_key(path: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(path.as_bytes())
}

/// The media whose entry's archive path is exactly `path`.
pub fn media_for_path(txn: &ReadTransaction, path: &str) -> Result<Option<u64>> {
    let index = txn.open_multimap_table(PATHS).map_err(storage("open paths"))?;
    for id in index.get(path_key(path)).map_err(storage("get path"))? {
        let id = id.map_err(storage("get path"))?.value();
        // A damaged entry cannot claim the path; another with the same hash still may.
        if let Ok(Some(entry)) = get(txn, id) {
            if entry.archive_path.as_deref() == Some(path) {
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

/// The entry for `media_id`, from whichever table holds it.
pub fn get(txn: &ReadTransaction, media_id: u64) -> Result<Option<Entry>> {
    let active = txn.open_table(ACTIVE).map_err(storage("open active"))?;
    if let Some(raw) = active.get(media_id).map_err(storage("get"))? {
        return decode_json(media_id, raw.value()).map(Some);
    }
    let done = txn.open_table(DONE).map_err(storage("open done"))?;
    if let Some(raw) = done.get(media_id).map_err(storage("get"))? {
        return decode_done(media_id, raw.value()).map(Some);
    }
    let ended = txn.open_table(ENDED).map_err(storage("open ended"))?;
    if let Some(raw) = ended.get(media_id).map_err(storage("get"))? {
        return decode_json(media_id, raw.value()).map(Some);
    }
    let damaged = txn.open_table(DAMAGED).map_err(storage("open damaged"))?;
    match damaged.get(media_id).map_err(storage("get"))? {
        Some(_) => Err(corrupt(
            media_id,
            "its record could not be read when the ledger was migrated",
        )),
        None => Ok(None),
    }
}
