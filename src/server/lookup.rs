//! Which media, if any, is archived at a path: the local ledger first (so downloads keep
//! working while PostgreSQL is down), PostgreSQL for files archived before the ledger knew
//! them.

use std::time::Duration;

use thiserror::Error;

use crate::db::Db;
use crate::state::{Ledger, LedgerError};

/// How long the PostgreSQL fallback may take before the request gets a 503.
const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// An archived file the server may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub media_id: u64,
    pub content_type: Option<String>,
    pub original_filename: Option<String>,
}

#[derive(Debug, Error)]
pub enum LookupError {
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("database: {0}")]
    Database(String),
}

/// The media archived at `rel` according to PostgreSQL, for files archived before the ledger
/// knew them (the ledger, asked first with [`from_ledger`], has never heard of the path).
pub async fn from_db(db: &Db, rel: &str) -> Result<Option<Archived>, LookupError> {
    let row = tokio::time::timeout(DB_TIMEOUT, db.archived_at_path(rel))
        .await
        .map_err(|_| LookupError::Database(format!("no answer within {}s", DB_TIMEOUT.as_secs())))?
        .map_err(|e| LookupError::Database(e.to_string()))?;
    Ok(row.and_then(|row| {
        Some(Archived {
            media_id: u64::try_from(row.id).ok()?,
            content_type: Some(row.content_type).filter(|s| !s.is_empty()),
            original_filename: Some(row.original_filename).filter(|s| !s.is_empty()),
        })
    }))
}

/// `Some(answer)` when the ledger knows the path, `None` when it has never heard of it. A
/// ledger entry that knows the path decides alone: only stages with a finished archived file
/// count, and only at exactly that path. Blocking (a redb read).
pub fn from_ledger(ledger: &Ledger, rel: &str) -> Result<Option<Option<Archived>>, LedgerError> {
    let Some(media_id) = ledger.media_for_path(rel)? else {
        return Ok(None);
    };
    let entry = ledger.get(media_id)?;
    Ok(Some(entry.and_then(|e| {
        (e.stage().has_archived_file() && e.archive_path.as_deref() == Some(rel)).then_some(Archived {
            media_id,
            content_type: e.content_type,
            original_filename: e.original_filename,
        })
    })))
}
