//! Group commits: one thread writes whatever entries are waiting in one transaction with one
//! fsync, and only then answers each caller. Many files in flight thus cost one fsync per
//! batch instead of one per entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use redb::{Database, Durability};

use crate::entry::Entry;
use crate::tables::Tables;
use crate::{write_txn, LedgerError, Result};

/// Entries waiting for the next group commit, at most this many per transaction.
const MAX_BATCH: usize = 512;
/// How long entries nobody waits for ([`crate::Persist::Soon`]) are held for a commit someone
/// waits for to carry them, before they are committed on their own.
const HOLD_LAZY: Duration = Duration::from_millis(250);
/// Commits start at least this far apart: under load the writer would otherwise commit
/// whatever arrived during the last fsync, many small batches each paying a whole commit
/// (most of its CPU); a lone commit after a quiet spell goes at once.
const COMMIT_SPACING: Duration = Duration::from_millis(5);

pub struct Job {
    /// None: nothing to write, only a reply once everything queued before is committed.
    pub entry: Option<Entry>,
    pub reply: Reply,
}

pub enum Reply {
    Blocking(mpsc::Sender<Result<()>>),
    Async(oneshot::Sender<Result<()>>),
    /// Nobody waits: see [`crate::Persist::Soon`].
    None,
}

impl Reply {
    /// A caller that stopped waiting (a cancelled task) has nothing left to tell.
    fn send(self, result: Result<()>) {
        match self {
            Reply::Blocking(tx) => drop(tx.send(result)),
            Reply::Async(tx) => drop(tx.send(result)),
            Reply::None => {}
        }
    }
}

pub fn run(db: Arc<Database>, queue: mpsc::Receiver<Job>, commits: Arc<AtomicU64>) {
    let mut batch: Vec<Job> = Vec::new();
    // When the batch must be committed even if nobody else asks: the oldest held lazy
    // entry's limit, or the spacing after the last commit once someone waits.
    let mut deadline: Option<Instant> = None;
    let mut next_commit = Instant::now();
    loop {
        let next = match deadline {
            None => queue.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) => queue.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        let closed = match next {
            Ok(job) => {
                batch.push(job);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let full = closed || batch.len() >= MAX_BATCH;
        let waited_for = batch.iter().any(|job| !matches!(job.reply, Reply::None));
        if waited_for && !full && now < next_commit {
            // Nothing that arrives before then can change that this batch commits then
            // (unless it fills, which the queue can wait for): sleep instead of waking for
            // every entry queued meanwhile, a thread switch each under load.
            std::thread::sleep(next_commit - now);
            deadline = Some(next_commit);
            continue;
        }
        let due = deadline.is_some_and(|at| now >= at);
        if !(waited_for || full || due) {
            deadline.get_or_insert(now + HOLD_LAZY);
            continue;
        }
        deadline = None;
        if commit_batch(&db, std::mem::take(&mut batch)) {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        next_commit = Instant::now() + COMMIT_SPACING;
        if closed {
            return;
        }
    }
}

/// Writes a batch in one transaction and answers everyone in it; false when there was
/// nothing to write.
fn commit_batch(db: &Database, batch: Vec<Job>) -> bool {
    // A batch of flushes alone has nothing to write: everything queued before them was
    // committed by earlier batches of this same thread.
    if batch.iter().all(|job| job.entry.is_none()) {
        batch.into_iter().for_each(|job| job.reply.send(Ok(())));
        return false;
    }
    let result = write_txn(db, Durability::Immediate, |tables: &mut Tables<'_>| {
        batch
            .iter()
            .filter_map(|job| job.entry.as_ref())
            .try_for_each(|entry| tables.store(entry))
    });
    let shared = result.as_ref().map(|_| ()).map_err(ToString::to_string);
    for job in batch {
        job.reply.send(shared.clone().map_err(LedgerError::Batch));
    }
    true
}
