//! The parts every long-running command shares, built once from the settings: the ledger,
//! the backend's database, the bucket, one set of metrics, the scheduler's activity and the
//! logger. The file server and the syncer share one [`Context`].

use std::sync::Arc;

use slog::Logger;

use crate::activity::Activity;
use crate::check;
use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::state::Ledger;
use crate::storage::Storage;

/// The ledger's file name inside `STATE_DIR`.
pub const LEDGER_FILE: &str = "r2-sync.redb";

/// This instance's name in the lease table: stable across restarts of the same state dir
/// (a dry run, which claims nothing, writes none).
pub fn instance_name(cfg: &Config) -> String {
    let path = cfg.state_dir.join("instance-id");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return existing.to_owned();
        }
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let id = format!(
        "{}-{:016x}",
        if host.is_empty() { "r2-sync" } else { &host },
        rand::random::<u64>()
    );
    if !cfg.sync.dry_run {
        if let Err(e) = crate::archive::write_atomic(&path, id.as_bytes()) {
            // This run still has a name; the next start makes a new one, and leases held
            // under this one expire on their own.
            eprintln!("r2-sync: cannot keep the instance id in {}: {e}", path.display());
        }
    }
    id
}

/// The ledger: `STATE_DIR/r2-sync.redb`. A dry run writes nothing: it reads an existing
/// ledger without changing it, or keeps an empty one in memory.
fn open_ledger(cfg: &Config) -> Result<Ledger, String> {
    let path = cfg.state_dir.join(LEDGER_FILE);
    if cfg.sync.dry_run {
        return match path.exists() {
            true => Ledger::open_read_only(&path).map_err(|e| {
                format!("{e} (DRY_RUN opens an existing ledger read-only; run once without DRY_RUN to recover it)")
            }),
            false => Ledger::in_memory().map_err(|e| e.to_string()),
        };
    }
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| format!("state directory {}: {e}", cfg.state_dir.display()))?;
    Ledger::open(&path).map_err(|e| e.to_string())
}

/// The shared parts every long-running command needs, built once. The file server and the
/// syncer each hold this one context; what they add is their own.
pub struct Context {
    pub cfg: Arc<Config>,
    pub ledger: Arc<Ledger>,
    pub db: Db,
    pub storage: Storage,
    /// One set of metrics for the scheduler and the server.
    pub metrics: Arc<Metrics>,
    /// What the scheduler is doing, for the dashboard.
    pub activity: Arc<Activity>,
    /// The process's logger; the syncer adds its role to it.
    pub log: Logger,
}

impl Context {
    pub fn open(cfg: Config, log: Logger) -> Result<Self, String> {
        if !cfg.sync.dry_run {
            check::prepare_target_dir(cfg.target_dir())?;
        }
        let ledger = open_ledger(&cfg)?;
        let db = Db::new(&cfg.db, instance_name(&cfg)).map_err(|e| e.to_string())?;
        let storage = Storage::new(&cfg.r2).map_err(|e| e.to_string())?;
        Ok(Self {
            cfg: Arc::new(cfg),
            ledger: Arc::new(ledger),
            db,
            storage,
            metrics: Arc::new(Metrics::new()),
            activity: Arc::default(),
            log,
        })
    }
}
