//! Format 1 → 2, in place, when a ledger written before format 2 is opened.
//!
//! Format 1 kept every entry as JSON in one `entries` table, so every pass and every scrape
//! read them all, and indexed paths by their text. The migration moves them into format 2's tables in chunks, each chunk one
//! transaction that also deletes what it moved: a crash between chunks leaves every entry in
//! exactly one place, and the next open goes on where it stopped. The last transaction drops
//! the old table and writes the format; the file is compacted after.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::tables::{self, Tables, FORMAT, META};
use crate::{storage, LedgerError, Result};

/// Format 1's one table of entries.
pub const V1_ENTRIES: TableDefinition<u64, &str> = TableDefinition::new("entries");

/// Entries moved per transaction: bounds the memory a migration holds.
const CHUNK: usize = 10_000;

/// The format a database holds: 1 when it has format 1's table, else what `meta` says
/// (0 for a new, empty database).
pub fn format_of(db: &impl ReadableDatabase) -> Result<u64> {
    let txn = db.begin_read().map_err(storage("begin read"))?;
    let v1 = txn
        .list_tables()
        .map_err(storage("list tables"))?
        .any(|t| t.name() == V1_ENTRIES.name());
    if v1 {
        return Ok(1);
    }
    match txn.open_table(META) {
        Ok(meta) => Ok(meta
            .get("format")
            .map_err(storage("read format"))?
            .map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(storage("open meta")(e)),
    }
}

/// Brings `db` to format 2 (or makes a new one format 2). True when entries were migrated.
pub fn to_current(db: &mut Database, shown: &str) -> Result<bool> {
    let format = format_of(db)?;
    if format > FORMAT {
        return Err(LedgerError::Newer {
            path: shown.to_owned(),
            format,
        });
    }
    let migrated = format == 1;
    while format == 1 && move_chunk(db)? {}
    if format != FORMAT {
        finish(db)?;
    }
    if migrated {
        // Freed pages go back to the file system: a million JSON entries were ~600 MB.
        db.compact().map_err(storage("compact"))?;
    }
    Ok(migrated)
}

/// Moves up to [`CHUNK`] format-1 entries into format 2's tables. False once none are left.
fn move_chunk(db: &Database) -> Result<bool> {
    let txn = db.begin_write().map_err(storage("begin write"))?;
    let more = {
        let mut old = txn.open_table(V1_ENTRIES).map_err(storage("open entries"))?;
        let mut new = Tables::open(&txn)?;
        let mut moved = 0;
        while moved < CHUNK {
            let Some((id, raw)) = old.pop_first().map_err(storage("take entry"))? else {
                break;
            };
            let (id, raw) = (id.value(), raw.value().to_owned());
            place(&mut new, id, &raw)?;
            moved += 1;
        }
        !old.is_empty().map_err(storage("count entries"))?
    };
    txn.commit().map_err(storage("commit"))?;
    Ok(more)
}

/// Stores one format-1 record; one that cannot be read is kept, raw, in `damaged` (and
/// reported by every read of that media) rather than dropped.
fn place(new: &mut Tables<'_>, id: u64, raw: &str) -> Result<()> {
    match tables::decode_json(id, raw) {
        Ok(entry) => new.store(&entry),
        Err(_) => new
            .damaged
            .insert(id, raw.as_bytes())
            .map(drop)
            .map_err(storage("keep damaged record")),
    }
}

fn finish(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(storage("begin write"))?;
    txn.delete_table(V1_ENTRIES).map_err(storage("drop entries"))?;
    txn.delete_table(tables::V1_PATHS)
        .map_err(storage("drop archive_paths"))?;
    drop(Tables::open(&txn)?);
    txn.open_table(META)
        .map_err(storage("open meta"))?
        .insert("format", FORMAT)
        .map_err(storage("write format"))?;
    txn.commit().map_err(storage("commit"))
}

/// Copies a format-1 database's entries into `db` (a new, empty one): how a ledger that may
/// not be written (`DRY_RUN`) is read by this version.
pub fn copy_v1(from: &impl ReadableDatabase, db: &Database) -> Result<()> {
    let read = from.begin_read().map_err(storage("begin read"))?;
    let old = read.open_table(V1_ENTRIES).map_err(storage("open entries"))?;
    let txn = db.begin_write().map_err(storage("begin write"))?;
    {
        let mut new = Tables::open(&txn)?;
        for row in old.iter().map_err(storage("iterate"))? {
            let (id, raw) = row.map_err(storage("iterate"))?;
            place(&mut new, id.value(), raw.value())?;
        }
    }
    txn.commit().map_err(storage("commit"))?;
    finish(db)
}

#[cfg(test)]
pub fn move_one_chunk_for_tests(db: &Database) {
    assert!(move_chunk(db).unwrap(), "more than one chunk to move");
}
