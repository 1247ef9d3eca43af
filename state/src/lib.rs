//! The r2-sync ledger: what stage every media file's sync has reached, kept in an embedded
//! redb database under `STATE_DIR`, so a restart resumes where the last run stopped.
//!
//! What is in flight is kept apart from what is finished (see [`tables`]), and counts per
//! stage are kept on write, so a pass, a scrape or a start-up costs what is in flight, not
//! what the archive holds. Entries in flight are small JSON documents (fields can be added
//! without a migration); finished ones are compact records ([`done`]). A ledger written by an
//! older version is migrated when opened ([`migrate`]).
//! This crate does no network or file I/O besides its own database.

pub mod done;
pub mod entry;
mod migrate;
mod query;
pub mod tables;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use futures_channel::oneshot;

use redb::{Database, Durability, ReadableDatabase};
use thiserror::Error;

pub use entry::{Entry, IllegalMove, Stage};
pub use query::Query;
use tables::{Tables, COUNTS};
use writer::{Job, Reply};

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
    #[error(
        "ledger {path}: written by a newer r2-sync (format {format}); this version reads format {}",
        tables::FORMAT
    )]
    Newer { path: String, format: u64 },
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
    #[error("ledger: entry for media {media_id} is unreadable: {reason}")]
    Corrupt { media_id: u64, reason: String },
    #[error(transparent)]
    IllegalMove(#[from] IllegalMove),
}

pub type Result<T> = std::result::Result<T, LedgerError>;

fn storage<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> LedgerError {
    move |e| LedgerError::Storage { op, source: e.into() }
}

/// How durable a change must be before [`Ledger::set`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// On disk (the group commit's fsync) before it returns.
    Now,
    /// Queued for the next group commit; returns at once. For a change whose loss in a crash
    /// is harmless because the step before it is idempotent (the entry then resumes from the
    /// previous stage and repeats that step). Entries are committed in the order queued, so
    /// a later write of the same entry wins.
    Soon,
    /// Not written: the next write of this entry carries it. For a step a crash may undo
    /// because what it stands for is not durable yet either.
    WithNext,
}

/// The ledger. Cheap to share behind an `Arc`.
///
/// Every write goes through one writer thread that groups concurrent commits (see
/// [`writer`]); every stage change goes through [`Ledger::set`].
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
    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        match self {
            Store::Writable(db) => db.begin_read(),
            Store::ReadOnly(db) => db.begin_read(),
        }
        .map_err(storage("begin read"))
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing the queue ends the writer; wait for it so the file is released on return.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                // Its panic was already printed by the panic hook; nothing is left to release.
                eprintln!("ledger: the writer thread panicked");
            }
        }
    }
}

/// One write transaction over every table.
fn write_txn<T>(db: &Database, durability: Durability, f: impl FnOnce(&mut Tables<'_>) -> Result<T>) -> Result<T> {
    let mut txn = db.begin_write().map_err(storage("begin write"))?;
    txn.set_durability(durability).map_err(storage("set durability"))?;
    let out = {
        let mut tables = Tables::open(&txn)?;
        f(&mut tables)?
    };
    txn.commit().map_err(storage("commit"))?;
    Ok(out)
}

fn gone() -> LedgerError {
    LedgerError::Batch("the writer thread is gone".into())
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (or creates) the ledger file, migrating one an older version wrote. Fails with
    /// [`LedgerError::InUse`] when another process holds it.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let mut db = Database::create(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::InUse { path: shown.clone() },
            source => LedgerError::Open {
                path: shown.clone(),
                source,
            },
        })?;
        migrate::to_current(&mut db, &shown)?;
        Self::writable(db)
    }

    /// A ledger that lives in memory only, gone when dropped (`DRY_RUN` without a ledger).
    pub fn in_memory() -> Result<Self> {
        let mut db = Self::memory_db()?;
        migrate::to_current(&mut db, "(in memory)")?;
        Self::writable(db)
    }

    fn memory_db() -> Result<Database> {
        Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| LedgerError::Open {
                path: "(in memory)".into(),
                source,
            })
    }

    /// The ledger at `path`, readable only: nothing in the file changes (`DRY_RUN`). Every
    /// write answers [`LedgerError::ReadOnly`]. A file that needs recovery is refused; one an
    /// older version wrote is read into memory in this version's layout.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let db = redb::ReadOnlyDatabase::open(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::InUse { path: shown.clone() },
            source => LedgerError::Open {
                path: shown.clone(),
                source,
            },
        })?;
        let db = match migrate::format_of(&db)? {
            1 => {
                let copy = Self::memory_db()?;
                migrate::copy_v1(&db, &copy)?;
                Store::Writable(Arc::new(copy))
            }
            tables::FORMAT => Store::ReadOnly(db),
            format => return Err(LedgerError::Newer { path: shown, format }),
        };
        Ok(Self {
            db,
            commits: Arc::default(),
            queue: None,
            writer: None,
        })
    }

    fn writable(db: Database) -> Result<Self> {
        let db = Arc::new(db);
        let (queue, jobs) = mpsc::channel();
        let for_writer = Arc::clone(&db);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&commits);
        let writer = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer::run(for_writer, jobs, counted))
            .map_err(|e| LedgerError::Batch(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            db: Store::Writable(db),
            commits,
            queue: Some(queue),
            writer: Some(writer),
        })
    }

    fn enqueue(&self, entry: Option<&Entry>, reply: Reply) -> Result<()> {
        let queue = self.queue.as_ref().ok_or(LedgerError::ReadOnly)?;
        queue
            .send(Job {
                entry: entry.cloned(),
                reply,
            })
            .map_err(|_| gone())
    }

    async fn commit(&self, entry: Option<&Entry>) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(entry, Reply::Async(tx))?;
        rx.await.map_err(|_| gone())?
    }

    fn commit_blocking(&self, entry: &Entry) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.enqueue(Some(entry), Reply::Blocking(tx))?;
        rx.recv().map_err(|_| gone())?
    }

    /// Moves `entry` to stage `to` (or keeps it where it is, `to` being its stage) and stores
    /// it as durably as `persist` says. The only way an entry changes stage: a move the stage
    /// machine does not allow ([`Stage::can_move_to`]) is refused, the entry unchanged.
    pub async fn set(&self, entry: &mut Entry, to: Stage, persist: Persist) -> Result<()> {
        entry.move_to(to)?;
        match persist {
            Persist::Now => self.commit(Some(entry)).await,
            Persist::Soon => self.enqueue(Some(entry), Reply::None),
            Persist::WithNext => Ok(()),
        }
    }

    /// [`Ledger::set`] with [`Persist::Now`] for code that is not async: blocks the thread.
    pub fn set_blocking(&self, entry: &mut Entry, to: Stage) -> Result<()> {
        entry.move_to(to)?;
        self.commit_blocking(entry)
    }

    /// Stores `entry` at the stage it is at (progress, attempts, an error), as durably as
    /// `persist` says.
    pub async fn save(&self, entry: &mut Entry, persist: Persist) -> Result<()> {
        self.set(entry, entry.stage(), persist).await
    }

    /// Waits until everything queued so far ([`Persist::Soon`]) is on disk.
    pub async fn flush(&self) -> Result<()> {
        self.commit(None).await
    }

    /// Reads, changes and stores one entry durably, at its stage; `None` when it does not
    /// exist. Blocks the thread.
    pub fn update(&self, media_id: u64, change: impl FnOnce(&mut Entry)) -> Result<Option<Entry>> {
        let Some(mut entry) = self.get(media_id)? else {
            return Ok(None);
        };
        change(&mut entry);
        let stage = entry.stage();
        self.set_blocking(&mut entry, stage)?;
        Ok(Some(entry))
    }

    /// Group commits written since the ledger was opened (each one transaction, one fsync).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub fn get(&self, media_id: u64) -> Result<Option<Entry>> {
        tables::get(&self.db.begin_read()?, media_id)
    }

    pub fn remove(&self, media_id: u64) -> Result<()> {
        match &self.db {
            Store::Writable(db) => write_txn(db, Durability::Immediate, |t| t.remove(media_id)),
            Store::ReadOnly(_) => Err(LedgerError::ReadOnly),
        }
    }

    /// The media id whose archived file lives at `archive_path` (relative to the archive).
    pub fn media_for_path(&self, archive_path: &str) -> Result<Option<u64>> {
        tables::media_for_path(&self.db.begin_read()?, archive_path)
    }

    /// Every entry still in flight (not `done`, `failed`, `abandoned` or `shadowed`), in media
    /// id order: what a pass settles and a start-up reconciles.
    pub fn active(&self) -> Result<Vec<Entry>> {
        let q = Query {
            stages: Stage::ALL.into_iter().filter(|s| !s.is_terminal()).collect(),
            ..Query::default()
        };
        let mut out = self.collect(&q)?;
        out.reverse();
        Ok(out)
    }

    /// The entries `q` asks for, in [`Ledger::scan`]'s order; an unreadable one stops the read
    /// with its error.
    pub fn collect(&self, q: &Query) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut failed = None;
        self.scan(q, |found| match found {
            Ok(entry) => {
                out.push(entry);
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        failed.map_or(Ok(out), Err)
    }

    /// Calls `each` with every entry `q` asks for (an unreadable record as its error) until it
    /// returns false; see [`Query`].
    pub fn scan(&self, q: &Query, each: impl FnMut(Result<Entry>) -> bool) -> Result<()> {
        query::scan(&self.db.begin_read()?, q, each)
    }

    /// How many entries sit at each stage (kept on write: one small read).
    pub fn counts(&self) -> Result<BTreeMap<Stage, usize>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(COUNTS).map_err(storage("open counts"))?;
        let mut counts = BTreeMap::new();
        for stage in Stage::ALL {
            if let Some(n) = table.get(stage.as_str()).map_err(storage("read count"))? {
                if n.value() > 0 {
                    counts.insert(stage, usize::try_from(n.value()).unwrap_or(usize::MAX));
                }
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests;
