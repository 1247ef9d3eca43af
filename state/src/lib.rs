//! The r2-sync ledger: what stage every media file's sync has reached, kept in an embedded
//! redb database under `STATE_DIR`, so a restart resumes where the last run stopped.
//!
//! Each entry is a small JSON document keyed by media id (JSON so that fields can be added
//! without a migration). A second table maps archive paths to media ids for the file server.
//! This crate does no network or file I/O besides its own database.

pub mod entry;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;

pub use entry::{Entry, Stage};

const ENTRIES: TableDefinition<u64, &str> = TableDefinition::new("entries");
const PATHS: TableDefinition<&str, u64> = TableDefinition::new("archive_paths");

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("ledger {path}: already in use by another r2-sync process")]
    InUse { path: String },
    #[error("ledger {path}: cannot open: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("ledger: {op} failed: {source}")]
    Storage {
        op: &'static str,
        #[source]
        source: redb::Error,
    },
    #[error("ledger: commit failed: {0}")]
    Batch(String),
    #[error("ledger: opened read-only (DRY_RUN), nothing is written")]
    ReadOnly,
    #[error("ledger: entry for media {media_id} is unreadable: {source}")]
    Corrupt {
        media_id: u64,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, LedgerError>;

fn storage<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> LedgerError {
    move |e| LedgerError::Storage { op, source: e.into() }
}

/// The ledger. Cheap to share behind an `Arc`.
///
/// Every stage change is committed with immediate durability. Commits from concurrent
/// callers are grouped: a writer thread takes whatever entries are waiting, writes them in one
/// transaction with one fsync, and only then answers each caller. Many files in flight thus
/// cost one fsync per batch instead of one per entry.
pub struct Ledger {
    db: Store,
    /// Write transactions committed by the writer thread since the ledger was opened.
    commits: Arc<AtomicU64>,
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Where entries live: a writable database (a file, or memory), or a file opened read-only.
enum Store {
    Writable(Arc<Database>),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl Store {
    fn begin_read(&self) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Store::Writable(db) => db.begin_read(),
            Store::ReadOnly(db) => db.begin_read(),
        }
    }
}

/// Entries waiting for the next group commit, at most this many per transaction.
const MAX_BATCH: usize = 512;
/// How long entries nobody waits for ([`Ledger::commit_later`]) are held for a commit someone
/// waits for to carry them, before they are committed on their own.
const HOLD_LAZY: Duration = Duration::from_millis(250);
/// Commits start at least this far apart: under load the writer would otherwise commit
/// whatever arrived during the last fsync, many small batches each paying a whole commit
/// (most of its CPU); a lone commit after a quiet spell goes at once.
const COMMIT_SPACING: Duration = Duration::from_millis(5);

struct Job {
    /// None: nothing to write, only a reply once everything queued before is committed.
    entry: Option<Entry>,
    reply: Reply,
}

enum Reply {
    Blocking(mpsc::Sender<Result<()>>),
    Async(oneshot::Sender<Result<()>>),
    /// Nobody waits: see [`Ledger::commit_later`].
    None,
}

impl Reply {
    fn send(self, result: Result<()>) {
        match self {
            Reply::Blocking(tx) => drop(tx.send(result)),
            Reply::Async(tx) => drop(tx.send(result)),
            Reply::None => {}
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing the queue ends the writer; wait for it so the file is released on return.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn run_writer(db: Arc<Database>, queue: mpsc::Receiver<Job>, commits: Arc<AtomicU64>) {
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
    let result = write_txn(db, Durability::Immediate, |entries, paths| {
        batch
            .iter()
            .filter_map(|job| job.entry.as_ref())
            .try_for_each(|entry| apply(entries, paths, entry))
    });
    let shared = result.as_ref().map(|_| ()).map_err(ToString::to_string);
    for job in batch {
        job.reply.send(shared.clone().map_err(LedgerError::Batch));
    }
    true
}

/// One write transaction over both tables.
fn write_txn<T>(
    db: &Database,
    durability: Durability,
    f: impl FnOnce(&mut redb::Table<u64, &str>, &mut redb::Table<&str, u64>) -> Result<T>,
) -> Result<T> {
    let mut txn = db.begin_write().map_err(storage("begin write"))?;
    txn.set_durability(durability).map_err(storage("set durability"))?;
    let out = {
        let mut entries = txn.open_table(ENTRIES).map_err(storage("open entries"))?;
        let mut paths = txn.open_table(PATHS).map_err(storage("open paths"))?;
        f(&mut entries, &mut paths)?
    };
    txn.commit().map_err(storage("commit"))?;
    Ok(out)
}

/// Stores `entry`, keeping the path index in step.
fn apply(entries: &mut redb::Table<u64, &str>, paths: &mut redb::Table<&str, u64>, entry: &Entry) -> Result<()> {
    let json = serde_json::to_string(entry).expect("ledger entries always serialise");
    let old = entries
        .insert(entry.media_id, json.as_str())
        .map_err(storage("insert"))?
        .map(|raw| decode(entry.media_id, raw.value()))
        .transpose()?;
    let old_path = old.and_then(|o| o.archive_path);
    if old_path != entry.archive_path {
        if let Some(old_path) = old_path {
            paths.remove(old_path.as_str()).map_err(storage("unindex path"))?;
        }
    }
    if let Some(path) = &entry.archive_path {
        paths
            .insert(path.as_str(), entry.media_id)
            .map_err(storage("index path"))?;
    }
    Ok(())
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (or creates) the ledger file. Fails with [`LedgerError::InUse`] when another
    /// process holds it.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let db = Database::create(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::InUse { path: shown.clone() },
            source => LedgerError::Open {
                path: shown.clone(),
                source,
            },
        })?;
        Self::writable(db)
    }

    /// A ledger that lives in memory only, gone when dropped (`DRY_RUN` without a ledger).
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| LedgerError::Open {
                path: "(in memory)".into(),
                source,
            })?;
        Self::writable(db)
    }

    /// The ledger at `path`, readable only: nothing in the file changes (`DRY_RUN`). Every
    /// write answers [`LedgerError::ReadOnly`]. A file that needs recovery is refused.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let db = redb::ReadOnlyDatabase::open(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::InUse { path: shown.clone() },
            source => LedgerError::Open { path: shown, source },
        })?;
        Ok(Self {
            db: Store::ReadOnly(db),
            commits: Arc::default(),
            queue: None,
            writer: None,
        })
    }

    fn writable(db: Database) -> Result<Self> {
        let db = Arc::new(db);
        write_txn(&db, Durability::Immediate, |_, _| Ok(()))?;
        let (queue, jobs) = mpsc::channel();
        let for_writer = Arc::clone(&db);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&commits);
        let writer = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || run_writer(for_writer, jobs, counted))
            .map_err(|e| LedgerError::Batch(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            db: Store::Writable(db),
            commits,
            queue: Some(queue),
            writer: Some(writer),
        })
    }

    fn write<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut redb::Table<u64, &str>, &mut redb::Table<&str, u64>) -> Result<T>,
    ) -> Result<T> {
        match &self.db {
            Store::Writable(db) => write_txn(db, durability, f),
            Store::ReadOnly(_) => Err(LedgerError::ReadOnly),
        }
    }

    fn enqueue(&self, entry: Option<&Entry>, reply: Reply) -> Result<()> {
        let queue = self.queue.as_ref().ok_or(LedgerError::ReadOnly)?;
        queue
            .send(Job {
                entry: entry.cloned(),
                reply,
            })
            .map_err(|_| LedgerError::Batch("the writer thread is gone".into()))
    }

    /// Group commits written since the ledger was opened (each one transaction, one fsync).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub fn get(&self, media_id: u64) -> Result<Option<Entry>> {
        let txn = self.db.begin_read().map_err(storage("begin read"))?;
        let table = txn.open_table(ENTRIES).map_err(storage("open entries"))?;
        let Some(raw) = table.get(media_id).map_err(storage("get"))? else {
            return Ok(None);
        };
        decode(media_id, raw.value()).map(Some)
    }

    /// Stores an entry durably (fsync before returning), keeping the path index in step.
    /// Blocks the calling thread; async code uses [`Ledger::commit`].
    pub fn put(&self, entry: &Entry) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.enqueue(Some(entry), Reply::Blocking(tx))?;
        rx.recv()
            .map_err(|_| LedgerError::Batch("the writer thread is gone".into()))?
    }

    /// [`Ledger::put`] for async callers: waits for the group commit without blocking a thread.
    pub async fn commit(&self, entry: &Entry) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Some(entry), Reply::Async(tx))?;
        rx.await
            .map_err(|_| LedgerError::Batch("the writer thread is gone".into()))?
    }

    /// Waits until everything queued so far (see [`Ledger::commit_later`]) is on disk.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(None, Reply::Async(tx))?;
        rx.await
            .map_err(|_| LedgerError::Batch("the writer thread is gone".into()))?
    }

    /// Queues an entry for the next group commit and returns at once, for a stage whose loss
    /// in a crash is harmless because the step before it is idempotent (the entry then
    /// resumes from the previous stage and repeats that step). Entries are committed in the
    /// order they were queued, so a later [`Ledger::commit`] of the same entry wins.
    pub fn commit_later(&self, entry: &Entry) -> Result<()> {
        self.enqueue(Some(entry), Reply::None)
    }

    /// Reads, changes and stores one entry durably; `None` when it does not exist.
    pub fn update(&self, media_id: u64, change: impl FnOnce(&mut Entry)) -> Result<Option<Entry>> {
        let Some(mut entry) = self.get(media_id)? else {
            return Ok(None);
        };
        change(&mut entry);
        entry.touch();
        self.put(&entry)?;
        Ok(Some(entry))
    }

    pub fn remove(&self, media_id: u64) -> Result<()> {
        self.write(Durability::Immediate, |entries, paths| {
            if let Some(raw) = entries.remove(media_id).map_err(storage("remove"))? {
                if let Some(path) = decode(media_id, raw.value())?.archive_path {
                    paths.remove(path.as_str()).map_err(storage("unindex path"))?;
                }
            }
            Ok(())
        })
    }

    /// The media id whose archived file lives at `archive_path` (relative to the archive).
    pub fn media_for_path(&self, archive_path: &str) -> Result<Option<u64>> {
        let txn = self.db.begin_read().map_err(storage("begin read"))?;
        let table = txn.open_table(PATHS).map_err(storage("open paths"))?;
        Ok(table.get(archive_path).map_err(storage("get path"))?.map(|v| v.value()))
    }

    /// Every entry, in media id order.
    pub fn all(&self) -> Result<Vec<Entry>> {
        let txn = self.db.begin_read().map_err(storage("begin read"))?;
        let table = txn.open_table(ENTRIES).map_err(storage("open entries"))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(storage("iterate"))? {
            let (k, v) = row.map_err(storage("iterate"))?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// How many entries sit at each stage.
    pub fn counts(&self) -> Result<std::collections::BTreeMap<Stage, usize>> {
        let mut counts = std::collections::BTreeMap::new();
        for entry in self.all()? {
            *counts.entry(entry.stage).or_insert(0) += 1;
        }
        Ok(counts)
    }
}

fn decode(media_id: u64, raw: &str) -> Result<Entry> {
    serde_json::from_str(raw).map_err(|source| LedgerError::Corrupt { media_id, source })
}

#[cfg(test)]
mod tests;
