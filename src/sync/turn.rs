//! What one file's turn in a pass works with, besides its ledger entry: built by
//! `file::process`, handed to each step.

use slog::Logger;
use tokio_util::sync::CancellationToken;

use super::transfers::Transfers;
use super::Syncer;
use crate::db::MediaRow;

#[derive(Clone, Copy)]
pub(super) struct Turn<'a> {
    pub(super) s: &'a Syncer,
    pub(super) row: &'a MediaRow,
    pub(super) shutdown: &'a CancellationToken,
    /// Bounds the transfers under way (`SYNC_CONCURRENCY`).
    pub(super) transfers: &'a Transfers,
    /// The syncer's logger with the file's `media_id`.
    pub(super) log: &'a Logger,
}
