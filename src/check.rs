//! `r2-sync check`: reach every dependency once and say, one line each, what works.
//! The same checks back `/health/deep`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::db::grants::{self, Needed};
use crate::db::Db;
use crate::storage::Storage;

/// Each check gives up after this long, so a dead server cannot hang the caller.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    pub latency_ms: u64,
    pub detail: String,
}

async fn timed<F>(name: &'static str, fut: F) -> CheckResult
where
    F: std::future::Future<Output = Result<String, String>>,
{
    let start = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())));
    let latency_ms = start.elapsed().as_millis() as u64;
    match outcome {
        Ok(detail) => CheckResult {
            name,
            ok: true,
            latency_ms,
            detail,
        },
        Err(detail) => CheckResult {
            name,
            ok: false,
            latency_ms,
            detail,
        },
    }
}

pub async fn postgres(db: &Db) -> CheckResult {
    timed("postgres", async {
        db.ping().await.map_err(|e| e.to_string())?;
        let tls = if db.encrypted().await.unwrap_or(false) {
            "TLS"
        } else {
            "no TLS"
        };
        Ok(format!("SELECT 1 ok ({tls})"))
    })
    .await
}

/// Every privilege a pass needs in this mode (DRY_RUN and SHADOW_DIR need less); when one is
/// missing, the `GRANT`s that give them.
pub async fn privileges(db: &Db, cfg: &Config) -> CheckResult {
    let mode = match (cfg.sync.dry_run, cfg.sync.shadow_dir.is_some()) {
        (true, _) => grants::Mode::DryRun,
        (false, true) => grants::Mode::Shadow,
        (false, false) => grants::Mode::Archive,
    };
    timed("privileges", async {
        let held = db.privileges(mode).await.map_err(|e| e.to_string())?;
        let missing: Vec<&Needed> = held.iter().filter(|(_, has)| !has).map(|(n, _)| n).collect();
        if missing.is_empty() {
            let all: Vec<String> = held.iter().map(|(n, _)| n.to_string()).collect();
            return Ok(format!("{} held", all.join(", ")));
        }
        let what: Vec<String> = missing.iter().map(|n| format!("{n} (to {})", n.why)).collect();
        let grants = grants::grant_statements(&missing, db.role()).join(" ");
        Err(format!(
            "missing {}; run as the tables' owner: {grants}",
            what.join(", ")
        ))
    })
    .await
}

pub async fn bucket(storage: &Storage) -> CheckResult {
    timed("bucket", async {
        storage
            .ping()
            .await
            .map(|()| format!("bucket {:?} listed", storage.name()))
            .map_err(|e| format!("bucket {:?}: {e}", storage.name()))
    })
    .await
}

/// FFPROBE_PATH's version, and FFPROBE_DEMUX_PATH's when it is set (a pass needs both).
pub async fn ffprobe(programs: crate::probe::Programs<'_>) -> CheckResult {
    timed("ffprobe", async {
        let full = crate::probe::version(programs.full).await.map_err(|e| e.to_string())?;
        match programs.demux {
            None => Ok(full),
            Some(demux) => crate::probe::version(demux)
                .await
                .map(|v| format!("{full}; demux pass (FFPROBE_DEMUX_PATH): {v}"))
                .map_err(|e| {
                    format!("FFPROBE_DEMUX_PATH: {e}; name the image's ffprobe-demux (or another ffprobe), or leave it empty to judge every file with FFPROBE_PATH alone")
                }),
        }
    })
    .await
}

/// The ledger answers a read transaction (it lives on the state disk, which can fail too).
pub async fn ledger(ledger: std::sync::Arc<crate::state::Ledger>) -> CheckResult {
    timed("ledger", async move {
        tokio::task::spawn_blocking(move || ledger.get(0))
            .await
            .map_err(|e| e.to_string())?
            .map(|_| "readable".to_owned())
            .map_err(|e| e.to_string())
    })
    .await
}

/// Exists, is a directory, is writable (a probe file is created and removed), free space.
pub async fn directory(name: &'static str, dir: &Path) -> CheckResult {
    let dir = dir.to_path_buf();
    timed(name, async move {
        tokio::task::spawn_blocking(move || writable_dir(&dir))
            .await
            .map_err(|e| e.to_string())?
    })
    .await
}

fn writable_dir(dir: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let probe = dir.join(format!(".r2-sync-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    std::fs::remove_file(&probe).map_err(|e| {
        format!(
            "{}: cannot remove the write test {}: {e}",
            dir.display(),
            probe.display()
        )
    })?;
    let free = free_bytes(dir)
        .map(|b| format!(", {:.1} GiB free", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_default();
    Ok(format!("{} writable{free}", dir.display()))
}

/// Free bytes on the filesystem holding `dir`, for the operator's information.
fn free_bytes(dir: &Path) -> Option<u64> {
    space(dir).map(|s| s.free)
}

/// Room on a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    /// Available to an unprivileged writer.
    pub free: u64,
    pub total: u64,
}

/// The room on the filesystem holding `dir`.
pub fn space(dir: &Path) -> Option<Space> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(Space {
        free: stat.f_bavail.saturating_mul(stat.f_frsize),
        total: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

/// Makes the archive (or shadow) directory on a fresh install: one level only, inside a
/// parent that exists. A missing parent means the media share is not mapped, and creating
/// it would put the archive inside the container, lost with it. True when it was created.
pub fn prepare_target_dir(dir: &Path) -> Result<bool, String> {
    if dir.is_dir() {
        return Ok(false);
    }
    let parent = dir.parent().filter(|p| p.is_dir()).ok_or_else(|| {
        format!(
            "{} is missing and so is its parent: map the media share (container path /media) \
             or set ARCHIVE_DIR to a directory on it",
            dir.display()
        )
    })?;
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("cannot create {} in {}: {e}", dir.display(), parent.display())),
    }
}

/// All checks of `r2-sync check`, in order.
pub async fn all(cfg: &Config, db: &Db, storage: &Storage) -> Vec<CheckResult> {
    let (pg, privileges, s3, ff, archive, state) = tokio::join!(
        postgres(db),
        privileges(db, cfg),
        bucket(storage),
        ffprobe(cfg.sync.probers()),
        directory("archive", cfg.target_dir()),
        directory("state", &cfg.state_dir),
    );
    vec![pg, privileges, s3, ff, archive, state]
}
