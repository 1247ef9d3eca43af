//! What each subcommand does, wired from the parts.

use std::process::ExitCode;

use slog::Logger;

use crate::check;
use crate::cli::Command;
use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::server;
use crate::state::Ledger;
use crate::status;
use crate::storage::Storage;

/// The ledger's file name inside `STATE_DIR`.
pub const LEDGER_FILE: &str = "r2-sync.redb";

pub async fn run(command: Command, cfg: Config, log: Logger) -> ExitCode {
    match command {
        Command::Check => check(&cfg).await,
        Command::Status { json, filters } => status(&cfg, json, &filters).await,
        Command::ShadowReport { json } => crate::cutover::commands::shadow_report(&cfg, json).await,
        Command::Adopt { max_rate, json } => crate::cutover::commands::adopt(&cfg, max_rate, json).await,
        Command::Sync { once } => sync(cfg, log, once).await,
        Command::Serve => server::commands::serve(cfg, log).await,
        Command::Token {
            media_id,
            user_id,
            ttl,
            base_url,
        } => server::commands::token(&cfg, media_id, user_id, ttl, &base_url).await,
        // main answers it before reading the full configuration.
        Command::Healthcheck => server::commands::healthcheck(cfg.server.health_port).await,
        Command::Run => run_all(cfg, log).await,
    }
}

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

async fn check(cfg: &Config) -> ExitCode {
    println!(
        "ok   config: settings parsed (archive {}, state {})",
        cfg.archive_dir.display(),
        cfg.state_dir.display()
    );
    let db = match Db::new(&cfg.db, "r2-sync-check") {
        Ok(db) => db,
        Err(e) => return fail_line("postgres", &e.to_string()),
    };
    let storage = match Storage::new(&cfg.r2) {
        Ok(s) => s,
        Err(e) => return fail_line("bucket", &e.to_string()),
    };
    // Its failure is said here, and again by the archive check below, which runs anyway.
    if !cfg.sync.dry_run {
        match check::prepare_target_dir(cfg.target_dir()) {
            Ok(true) => println!("ok   archive: created {}", cfg.target_dir().display()),
            Ok(false) => {}
            Err(e) => println!("FAIL archive: {e}"),
        }
    }
    let results = check::all(cfg, &db, &storage).await;
    for r in &results {
        println!(
            "{} {}: {} ({} ms)",
            if r.ok { "ok  " } else { "FAIL" },
            r.name,
            r.detail,
            r.latency_ms
        );
    }
    if results.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail_line(name: &str, detail: &str) -> ExitCode {
    println!("FAIL {name}: {detail}");
    ExitCode::FAILURE
}

/// `r2-sync status`: read from the ledger file, or, while a running r2-sync holds it, from
/// that process's `GET /status` on the health port (which answers the same).
async fn status(cfg: &Config, json: bool, filters: &status::Filters) -> ExitCode {
    let shown = match Ledger::open(&cfg.state_dir.join(LEDGER_FILE)) {
        Ok(ledger) => local_status(&ledger, json, filters),
        Err(crate::state::LedgerError::InUse { path }) => remote_status(cfg, &path, json, filters).await,
        Err(e) => Err(e.to_string()),
    };
    match shown {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("r2-sync: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The limit a listing gets: as asked, or a screenful for a human.
fn listing_query(json: bool, filters: &status::Filters) -> crate::state::Query {
    let mut q = filters.query();
    if !json {
        q.limit.get_or_insert(status::HUMAN_LIMIT);
    }
    q
}

fn local_status(ledger: &Ledger, json: bool, filters: &status::Filters) -> Result<(), String> {
    if !filters.lists() {
        let summary = status::summary(ledger).map_err(|e| e.to_string())?;
        print_summary(&summary, json);
        return Ok(());
    }
    let q = listing_query(json, filters);
    let mut shown = 0;
    ledger
        .scan(&q, |found| {
            match found {
                Ok(entry) => {
                    print_entry(&entry, json);
                    shown += 1;
                }
                Err(e) => eprintln!("r2-sync: {e}"),
            }
            true
        })
        .map_err(|e| e.to_string())?;
    listing_footer(json, filters, shown);
    Ok(())
}

async fn remote_status(cfg: &Config, path: &str, json: bool, filters: &status::Filters) -> Result<(), String> {
    let port = cfg.server.health_port;
    let mut query = filters.to_url_query();
    if filters.lists() && !json && filters.limit.is_none() {
        query = format!("{query}&limit={}", status::HUMAN_LIMIT);
    }
    let (code, body) = server::commands::local_get(port, &format!("/status?{query}"))
        .await
        .map_err(|e| format!("ledger {path} is in use and /status on port {port} did not answer: {e}"))?;
    if code != 200 {
        let body = String::from_utf8_lossy(&body);
        return Err(format!(
            "ledger {path} is in use and /status on port {port} answered {code}: {body}"
        ));
    }
    if !filters.lists() {
        let summary = serde_json::from_slice(&body).map_err(|e| format!("/status on port {port}: {e}"))?;
        print_summary(&summary, json);
        return Ok(());
    }
    let mut shown = 0;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let entry = serde_json::from_slice(line).map_err(|e| format!("/status on port {port}: {e}"))?;
        print_entry(&entry, json);
        shown += 1;
    }
    listing_footer(json, filters, shown);
    Ok(())
}

fn print_summary(summary: &status::Summary, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).expect("summaries serialise")
        );
    } else {
        print!("{}", status::render(summary));
    }
}

fn print_entry(entry: &crate::state::Entry, json: bool) {
    if json {
        println!("{}", serde_json::to_string(entry).expect("entries serialise"));
    } else {
        println!("{}", status::line(entry));
    }
}

fn listing_footer(json: bool, filters: &status::Filters, shown: usize) {
    if !json && filters.limit.is_none() && shown == status::HUMAN_LIMIT {
        println!("(the first {shown}; --limit N shows more, --json all)");
    }
}

/// The shared parts every long-running command needs.
pub struct Parts {
    pub cfg: std::sync::Arc<Config>,
    pub ledger: std::sync::Arc<Ledger>,
    pub db: Db,
    pub storage: Storage,
    /// One set of metrics for the scheduler and the server.
    pub metrics: std::sync::Arc<Metrics>,
    /// What the scheduler is doing, for the dashboard.
    pub activity: std::sync::Arc<crate::activity::Activity>,
}

impl Parts {
    pub fn open(cfg: Config) -> Result<Self, String> {
        if !cfg.sync.dry_run {
            check::prepare_target_dir(cfg.target_dir())?;
        }
        let ledger = open_ledger(&cfg)?;
        let db = Db::new(&cfg.db, instance_name(&cfg)).map_err(|e| e.to_string())?;
        let storage = Storage::new(&cfg.r2).map_err(|e| e.to_string())?;
        Ok(Self {
            cfg: std::sync::Arc::new(cfg),
            ledger: std::sync::Arc::new(ledger),
            db,
            storage,
            metrics: std::sync::Arc::new(Metrics::new()),
            activity: std::sync::Arc::default(),
        })
    }

    pub fn server_context(&self, log: &Logger) -> server::ServerContext {
        server::ServerContext::new(
            self.cfg.clone(),
            self.ledger.clone(),
            self.db.clone(),
            self.storage.clone(),
            log.clone(),
            self.metrics.clone(),
            self.activity.clone(),
        )
    }

    pub fn syncer(&self, log: &Logger) -> crate::sync::Syncer {
        crate::sync::Syncer {
            cfg: self.cfg.clone(),
            db: self.db.clone(),
            storage: self.storage.clone(),
            ledger: self.ledger.clone(),
            log: log.new(slog::o!("role" => "sync")),
            metrics: self.metrics.clone(),
            activity: self.activity.clone(),
            flush: std::sync::Arc::new(crate::flush::Flusher::new(
                self.cfg.target_dir(),
                self.cfg.sync.archive_syncfs,
            )),
        }
    }
}

/// Runs `work` to its end, unless a shutdown was requested and `grace` has passed since: then
/// gives up on it. Safe because every stage is in the ledger before the next begins, so work
/// cut short resumes on the next start exactly as after a crash.
async fn within_grace<F: std::future::Future>(
    work: F,
    shutdown: &crate::shutdown::CancellationToken,
    grace: std::time::Duration,
    log: &Logger,
) -> Option<F::Output> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        out = work => Some(out),
        () = deadline => {
            slog::warn!(log, "shutdown grace period over; exiting with work in flight (resumed on next start)";
                "grace_s" => grace.as_secs());
            None
        }
    }
}

/// Opens the parts, prepares the lease table and installs the signal handlers.
async fn start(cfg: Config, log: &Logger) -> Result<(Parts, crate::shutdown::CancellationToken), ExitCode> {
    let parts = Parts::open(cfg).map_err(|e| {
        slog::error!(log, "cannot start"; "error" => e);
        ExitCode::FAILURE
    })?;
    // A dry run changes nothing anywhere, not even r2-sync's own table.
    if !parts.cfg.sync.dry_run {
        if let Err(e) = parts.db.ensure_lease_table().await {
            slog::warn!(log, "cannot prepare the lease table (will retry on each pass)"; "error" => %e);
        }
    }
    let shutdown = crate::shutdown::CancellationToken::new();
    crate::shutdown::on_signals(shutdown.clone(), log.clone()).map_err(|e| {
        slog::error!(log, "cannot install signal handlers"; "error" => %e);
        ExitCode::FAILURE
    })?;
    Ok((parts, shutdown))
}

/// `r2-sync run`: the scheduler and the file server in one process, sharing the ledger.
async fn run_all(cfg: Config, log: Logger) -> ExitCode {
    let (parts, shutdown) = match start(cfg, &log).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let running = match server::serve(parts.server_context(&log), shutdown.clone()).await {
        Ok(running) => running,
        Err(e) => {
            slog::error!(log, "file server cannot start"; "error" => %e);
            return ExitCode::FAILURE;
        }
    };
    let scheduler = tokio::spawn(crate::sync::schedule::run(parts.syncer(&log), shutdown.clone()));
    running.finished().await;
    // The server only finishes after shutdown was requested; the scheduler checkpoints and
    // stops at the same signal.
    shutdown.cancel();
    let grace = parts.cfg.server.shutdown_grace;
    let _ = within_grace(scheduler, &shutdown, grace, &log).await;
    slog::info!(log, "stopped");
    ExitCode::SUCCESS
}

async fn sync(cfg: Config, log: Logger, once: bool) -> ExitCode {
    let (parts, shutdown) = match start(cfg, &log).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let syncer = parts.syncer(&log);
    let grace = parts.cfg.server.shutdown_grace;
    if !once {
        let _ = within_grace(
            crate::sync::schedule::run(syncer, shutdown.clone()),
            &shutdown,
            grace,
            &log,
        )
        .await;
        return ExitCode::SUCCESS;
    }
    let one_pass = async {
        syncer.reconcile().await;
        syncer.pass(&shutdown).await
    };
    match within_grace(one_pass, &shutdown, grace, &log).await {
        Some(report) if report.all_succeeded() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
