//! The sync pipeline: claim → download → verify → validate → archive (+ sidecar) → record in
//! PostgreSQL → delete from R2 → done, every stage recorded in the ledger first (a small
//! object fetched whole skips `downloaded`: see `fetch::Download`).
//!
//! A pass ([`Syncer::pass`], here) claims rows and gives each to `file::process`, which
//! follows one file from its claim to its delete: `next` decides its next step from its
//! ledger entry, `fetch` (with `download`) brings its bytes, `place` puts them in the
//! archive, `owed` records them in PostgreSQL and deletes the object. `reconcile` runs once
//! at start-up.

pub mod download;
mod fetch;
mod file;
mod hashing;
mod ledger_write;
mod next;
mod owed;
mod place;
pub mod reconcile;
mod report;
pub mod schedule;
pub mod sidecar;
pub mod transfers;
mod trouble;
mod turn;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use slog::{info, warn, Logger};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::db::{DbError, MediaRow};
use crate::flush::Flusher;
use reconcile::Reconciled;
pub use report::{FileOutcome, PassReport};
use transfers::Transfers;

/// How long a claim keeps other instances away; renewed while the pass runs.
pub const LEASE: Duration = Duration::from_secs(60 * 60);
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5 * 60);
/// Files a pass works on at once. A file in flight costs a task and a ledger entry; what is
/// dear is bounded elsewhere: bytes in flight by SYNC_CONCURRENCY, ffprobe runs by the cores.
/// Many in flight keep the shared steps (syncfs, ledger commit, PostgreSQL batch, bucket
/// delete) busy with large batches instead of one small batch per file.
const FILES_IN_FLIGHT: usize = 128;

/// Everything a pass needs: the process's one [`Context`] and what only the syncer keeps.
#[derive(Clone)]
pub struct Syncer {
    /// Settings, ledger, database, bucket, metrics, and the activity the dashboard shows.
    pub ctx: Arc<Context>,
    /// The context's logger, with `role: sync`.
    pub log: Logger,
    /// Durability of the archive's files, shared by the files in flight.
    pub flush: Arc<Flusher>,
}

impl Syncer {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            log: ctx.log.new(slog::o!("role" => "sync")),
            flush: Arc::new(Flusher::new(ctx.cfg.target_dir(), ctx.cfg.sync.archive_syncfs)),
            ctx,
        }
    }

    /// Start-up reconciliation (module [`reconcile`]), before the first pass.
    pub async fn reconcile(&self) -> Reconciled {
        reconcile::reconcile(self).await
    }

    /// Applies every write the ledger says is owed. Returns how many entries moved on.
    pub async fn settle_owed(&self) -> usize {
        owed::settle(self).await
    }

    /// One pass: settle what earlier passes owe, then claim and process a batch.
    pub async fn pass(&self, shutdown: &CancellationToken) -> PassReport {
        let started = Instant::now();
        let (started_at, bytes_before) = (crate::state::entry::now_secs(), self.ctx.metrics.bytes_synced());
        self.ctx.activity.pass_started();
        let report = self.run_pass(shutdown).await;
        // The last stages of the last files may still be queued: a pass ends with its ledger
        // on disk, so that what it reports and what the ledger says agree.
        if let Err(e) = self.ctx.ledger.flush().await {
            warn!(self.log, "ledger write failed"; "error" => %e);
        }
        self.ctx
            .metrics
            .pass_finished(started.elapsed().as_secs_f64(), report.all_succeeded());
        let ledger = self.ctx.ledger.clone();
        if let Ok(Ok(counts)) = tokio::task::spawn_blocking(move || ledger.counts()).await {
            self.ctx.metrics.observe_ledger(&counts);
        }
        let bytes = self.ctx.metrics.bytes_synced() - bytes_before;
        self.ctx
            .activity
            .pass_finished(report::pass_record(&report, started_at, started.elapsed(), bytes));
        report
    }

    async fn run_pass(&self, shutdown: &CancellationToken) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport::default();
        if self.ctx.cfg.sync.dry_run {
            self.dry_run().await;
            return report;
        }
        self.ctx.storage.reset_breaker();
        if self.ctx.cfg.sync.shadow_dir.is_none() {
            report.settled = self.settle_owed().await;
        }
        let rows = match self.claim().await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(self.log, "cannot claim rows; pass skipped"; "error" => %e);
                report.deferred += 1;
                return report;
            }
        };
        report.claimed = rows.len();
        self.ctx.activity.claimed(rows.len());
        if !rows.is_empty() {
            crate::fault::point("after_claim");
        }
        info!(self.log, "pass started"; "claimed" => rows.len());
        let renew = self.renew_leases(rows.iter().map(|r| r.id).collect());
        let outcomes = self.process_all(rows, shutdown).await;
        renew.abort();
        let finished: Vec<i64> = outcomes
            .iter()
            .filter(|(_, (_, done))| *done)
            .map(|(id, _)| *id)
            .collect();
        self.release(&finished).await;
        for (_, (outcome, _)) in outcomes {
            report.add(outcome);
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        self.log_finished(&report);
        report
    }

    /// A batch of rows, claimed. A claim that fails is tried once more if the lease table
    /// could be (re)made: PostgreSQL may have been away when it was first prepared.
    async fn claim(&self) -> Result<Vec<MediaRow>, DbError> {
        let (db, batch) = (&self.ctx.db, self.ctx.cfg.sync.batch_size);
        let mut claimed = db.claim(batch, LEASE).await;
        if claimed.is_err() && db.ensure_lease_table().await.is_ok() {
            claimed = db.claim(batch, LEASE).await;
        }
        claimed
    }

    /// Each row's file taken as far as it goes: its outcome, and whether its lease may go.
    async fn process_all(&self, rows: Vec<MediaRow>, shutdown: &CancellationToken) -> Vec<(i64, (FileOutcome, bool))> {
        // SYNC_CONCURRENCY bounds the transfers; the rest of a file's way (fsyncs, ffprobe,
        // PostgreSQL, the delete) is mostly waiting, so more files may be at those stages at
        // once. Small files would otherwise queue behind each other's fsyncs.
        let concurrency = self.ctx.cfg.sync.concurrency;
        let transfers = Arc::new(Transfers::new(concurrency));
        let in_flight = FILES_IN_FLIGHT.max(concurrency.saturating_mul(transfers::SMALL_PER_SLOT as usize));
        // Each file is a task of its own, so that files use every core (hashing, parsing,
        // syscalls); polled inside this future they would all share one thread.
        let this = Arc::new(self.clone());
        futures::stream::iter(rows)
            .map(|row| {
                let (this, shutdown, transfers) = (Arc::clone(&this), shutdown.clone(), Arc::clone(&transfers));
                let this_log = self.log.clone();
                let activity = Arc::clone(&self.ctx.activity);
                let id = row.id;
                async move {
                    let task = tokio::spawn(async move { file::process(&this, row, &shutdown, &transfers).await });
                    let outcome = task.await.unwrap_or_else(|e| {
                        warn!(this_log, "file task failed; retried on a later pass"; "media_id" => id, "error" => %e);
                        (FileOutcome::Deferred, false)
                    });
                    activity.file_finished();
                    (id, outcome)
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await
    }

    fn log_finished(&self, report: &PassReport) {
        if self.ctx.storage.is_down() {
            warn!(self.log, "bucket unreachable: this pass stopped sending requests after {} without an answer; \
                the files it did not reach wait for the next pass", crate::storage::TRIP_AFTER;
                "deferred" => report.deferred, "error" => "no answer from the bucket");
        }
        info!(self.log, "pass finished";
            "claimed" => report.claimed, "archived" => report.archived, "owed" => report.owed,
            "failed" => report.failed, "abandoned" => report.abandoned, "deferred" => report.deferred,
            "skipped" => report.skipped, "settled" => report.settled, "elapsed_ms" => report.elapsed_ms);
    }

    /// Keeps this pass's claims from expiring. A renewal that fails is logged: should
    /// PostgreSQL stay away past the lease, another instance could claim rows in flight.
    fn renew_leases(&self, ids: Vec<i64>) -> tokio::task::JoinHandle<()> {
        let (db, log) = (self.ctx.db.clone(), self.log.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_RENEW_EVERY).await;
                if let Err(e) = db.renew(&ids, LEASE).await {
                    warn!(log, "lease renewal failed; retried in {} s", LEASE_RENEW_EVERY.as_secs();
                        "error" => %e, "claimed" => ids.len());
                }
            }
        })
    }

    /// Gives up the claims on rows that are finished. A release that fails only delays other
    /// instances until the lease runs out.
    async fn release(&self, finished: &[i64]) {
        if let Err(e) = self.ctx.db.release(finished).await {
            warn!(self.log, "lease release failed; the claims expire on their own"; "error" => %e,
                "claimed" => finished.len());
        }
    }

    /// `DRY_RUN`: read what a pass would take and say so; change nothing anywhere.
    async fn dry_run(&self) {
        match self.ctx.db.claimable(self.ctx.cfg.sync.batch_size).await {
            Ok(rows) => {
                for row in rows {
                    if let Err(e) = &row.object_key {
                        warn!(self.log, "dry run: would fail the row, its key names no object";
                            "media_id" => row.id, "error" => %e);
                        continue;
                    }
                    let rel = crate::archive::relative_path(
                        row.id,
                        row.approved_at.unwrap_or_else(chrono::Utc::now),
                        &row.original_filename,
                        &row.r2_key,
                    );
                    info!(self.log, "dry run: would archive";
                        "media_id" => row.id, "r2_key" => &row.r2_key, "archive_path" => rel.display().to_string());
                }
            }
            Err(e) => warn!(self.log, "dry run: cannot read approved rows"; "error" => %e),
        }
    }
}
