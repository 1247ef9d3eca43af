//! Power cuts: the archive and the ledger live on a FUSE file system that keeps only what was
//! made durable (`tests/powercut-fs`: fsync of a file makes its bytes durable, fsync of a
//! directory its entries, nothing else does). Round after round, new uploads arrive, a real
//! pass is killed at a random moment (a random delay, a crash point or a byte offset; or not at
//! all, when it ends first), the power is cut (everything not durable is lost), the machine
//! "reboots" (the file system is mounted again with what survived), the next pass runs to
//! its end, and the invariants hold.
//!
//! `POWERCUT_ROUNDS` sets the number of rounds (default 12, for CI; see docs/reliability.md
//! for the full size), `POWERCUT_SEED` the dice (printed at the start; timings are not
//! reproducible, the choices are).
#![cfg(feature = "fault-injection")]

use crate::common;

use std::time::{Duration, Instant};

use common::invariants::{self, sha256_hex, Seeded};
use common::{media, object_key, NewMedia, Rig};
use r2_sync_test_powercut_fs::PowerCutFs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The archive and the state directory, each on its own power-cut file system; the power goes
/// for both at once.
struct Disks {
    archive: PowerCutFs,
    state: PowerCutFs,
}

impl Disks {
    fn mount(rig: &Rig) -> Self {
        let mount = |dir: &std::path::Path| {
            PowerCutFs::mount(dir).unwrap_or_else(|e| panic!("the power-cut tests need FUSE: {e}"))
        };
        Self {
            archive: mount(&rig.archive_dir()),
            state: mount(&rig.state_dir()),
        }
    }

    /// Loses what is not durable (each inode with pending changes keeping them all with
    /// probability `keep`), and mounts what is left.
    fn power_cut(&mut self, keep: f64, rng: &mut StdRng) {
        self.archive.power_cut(keep, rng.random()).expect("power cut (archive)");
        self.state.power_cut(keep, rng.random()).expect("power cut (state)");
    }
}

/// The media a round uploads, made once.
struct Bodies {
    big: Vec<u8>,
    small: Vec<u8>,
    noise: Vec<u8>,
}

impl Bodies {
    fn make() -> Self {
        let src = tempfile::tempdir().unwrap();
        Self {
            // Spans several of the test builds' 256 KiB checkpoints.
            big: std::fs::read(media::video_sized(src.path(), "big.mp4", 2, "320x240", 60)).unwrap(),
            small: std::fs::read(media::video(src.path(), "small.mkv", 1)).unwrap(),
            noise: std::fs::read(media::corrupt(src.path(), "noise.mp4", 60_000)).unwrap(),
        }
    }
}

/// Uploads `count` new files of random kinds, their sizes known to the row or not.
async fn upload(rig: &Rig, bodies: &Bodies, round: usize, count: usize, rng: &mut StdRng) -> Vec<Seeded> {
    let mut seeded = Vec::new();
    for i in 0..count {
        let bytes = match rng.random_range(0..10) {
            // The first round's file is big: see `power_cuts`.
            _ if round == 0 => &bodies.big,
            0..3 => &bodies.big,
            3 => &bodies.noise,
            _ => &bodies.small,
        };
        let key = format!("uploads/powercut/{round}-{i}.mp4");
        rig.storage().put(&object_key(&key), bytes, "video/mp4").await.unwrap();
        let name = format!("clip {round}-{i}.mp4");
        let id = rig
            .insert_media(&NewMedia {
                file_size: rng.random_bool(0.5).then_some(bytes.len() as i64),
                ..NewMedia::approved(&key, &name)
            })
            .await;
        seeded.push(Seeded {
            id,
            key,
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        });
    }
    seeded
}

/// How a round's pass is interrupted.
#[derive(Debug)]
enum Kill {
    /// SIGKILL after this long (or never, should the pass end first).
    After(Duration),
    /// `R2SYNC_FAULT`: abort at a crash point or byte offset.
    Fault(String),
}

fn choose_kill(rng: &mut StdRng, typical_pass: Duration, biggest: u64) -> Kill {
    match rng.random_range(0..10) {
        0..5 => Kill::After(typical_pass.mul_f64(rng.random_range(0.0..1.2))),
        5..8 => {
            let points = r2_sync::fault::POINTS;
            Kill::Fault(points[rng.random_range(0..points.len())].to_string())
        }
        _ => Kill::Fault(format!("download@{}", rng.random_range(1..biggest))),
    }
}

/// How the archive is made durable.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flush {
    /// fsync of each file and directory: what r2-sync does on FUSE, which it does not trust
    /// with syncfs (and everywhere with `ARCHIVE_SYNCFS=false`).
    Fsync,
    /// The shared syncfs (`ARCHIVE_SYNCFS`, on by default, where the filesystem honours it),
    /// through the test builds' stand-in: see `R2SYNC_FAULT_SYNCFS` in `src/flush.rs`.
    Syncfs,
}

fn pass(rig: &Rig, flush: Flush) -> tokio::process::Command {
    let mut cmd = rig.command(&["sync", "--once"]);
    cmd.env("SYNC_CONCURRENCY", "3").env("LOG_LEVEL", "warn");
    if flush == Flush::Syncfs {
        cmd.env("R2SYNC_FAULT_SYNCFS", r2_sync_test_powercut_fs::SYNCFS_FILE);
    }
    cmd
}

/// Runs a pass interrupted by `kill`; true when it was (rather than ending first).
async fn interrupted_pass(rig: &Rig, flush: Flush, kill: &Kill) -> bool {
    let mut cmd = pass(rig, flush);
    if let Kill::Fault(fault) = kill {
        cmd.env("R2SYNC_FAULT", fault);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = match kill {
        Kill::After(delay) => {
            tokio::select! {
                status = child.wait() => status.unwrap(),
                () = tokio::time::sleep(*delay) => {
                    // The power goes: nothing of the process outlives it.
                    drop(child.start_kill());
                    child.wait().await.unwrap()
                }
            }
        }
        Kill::Fault(_) => tokio::time::timeout(Duration::from_secs(120), child.wait())
            .await
            .expect("an interrupted pass ends")
            .unwrap(),
    };
    status.code().is_none()
}

/// A pass to its end; its output.
async fn full_pass(rig: &Rig, flush: Flush, context: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        pass(rig, flush).env("LOG_LEVEL", "info").output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{context}: a pass ends"))
    .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{context}: the pass after the reboot ends normally\n{logs}"
    );
    logs
}

#[tokio::test]
async fn power_cuts_at_random_moments_of_real_passes_lose_nothing() {
    power_cuts(Flush::Fsync).await;
}

#[tokio::test]
async fn power_cuts_at_random_moments_of_real_passes_lose_nothing_with_the_shared_syncfs() {
    power_cuts(Flush::Syncfs).await;
}

async fn power_cuts(flush: Flush) {
    let rounds: usize = std::env::var("POWERCUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("POWERCUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("power-cut suite ({flush:?}): {rounds} rounds, POWERCUT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let rig = Rig::new().await;
    let mut disks = Disks::mount(&rig);
    let bodies = Bodies::make();
    let biggest = bodies.big.len() as u64;
    let mut seeded = Vec::new();
    let mut typical_pass = Duration::from_millis(1500);
    let mut interrupted = 0;
    let started = Instant::now();
    // Where each round's uploads start in `seeded`.
    let mut firsts = Vec::new();
    for round in 0..rounds {
        // The first round uploads the big file alone: with the shared syncfs, another file's
        // placement would flush the big file's first bytes too, and its cut lose nothing.
        let count = if round == 0 { 1 } else { rng.random_range(2..=4) };
        firsts.push(seeded.len());
        seeded.extend(upload(&rig, &bodies, round, count, &mut rng).await);
        // The first pass is cut halfway through the big file's first segment, before anything
        // of it is made durable, so that every run loses something to a cut. Then at random.
        let kill = match round {
            0 => Kill::Fault(format!("download@{}", r2_sync::sync::download::SEGMENT / 2)),
            _ => choose_kill(&mut rng, typical_pass, biggest),
        };
        // Half the cuts lose everything not fsynced; the others let each pending change
        // through or not at random (the kernel's writeback may have got there first).
        let keep = if round > 0 && rng.random_bool(0.5) { 0.5 } else { 0.0 };
        let context = format!("POWERCUT_SEED={seed} round {round} ({kill:?}, keep {keep})");
        if interrupted_pass(&rig, flush, &kill).await {
            interrupted += 1;
        }
        disks.power_cut(keep, &mut rng);
        let took = Instant::now();
        let logs = full_pass(&rig, flush, &context).await;
        typical_pass = (typical_pass + took.elapsed()) / 2;
        // Shown only when the check below fails.
        eprintln!("{context}: the pass after the reboot said:\n{logs}");
        // Every file every tenth round; else those of the last three rounds (a pass only
        // touches files still under way), so that the checks stay linear in the rounds.
        let checked = if round % 10 == 9 {
            0
        } else {
            firsts[round.saturating_sub(2)]
        };
        invariants::check_rig(&rig, &seeded[checked..]).await;
    }
    // What the last round's pass left owed is settled by one more, after one more cut.
    disks.power_cut(0.0, &mut rng);
    full_pass(&rig, flush, &format!("POWERCUT_SEED={seed} last pass")).await;
    invariants::check_rig(&rig, &seeded).await;
    // Each file reached its outcome: nothing lost to a cut is left waiting for a retry.
    let noise = sha256_hex(&bodies.noise);
    for s in &seeded {
        let want = if s.sha256 == noise { "failed" } else { "archived" };
        assert_eq!(
            rig.status(s.id).await,
            want,
            "POWERCUT_SEED={seed}: media {} (the rounds' output above says why)",
            s.id
        );
    }
    let (archive, state) = (disks.archive.stats(), disks.state.stats());
    eprintln!(
        "power-cut suite ({flush:?}): {rounds} rounds ({interrupted} passes interrupted) in {:?}; archive {archive:?}; state {state:?}",
        started.elapsed()
    );
    assert!(interrupted > 0 || rounds < 4, "no pass was ever interrupted");
    assert!(
        archive.lost > 0 && state.file_syncs > 0,
        "the cuts lost something, and the ledger was fsynced: archive {archive:?}, state {state:?}"
    );
    match flush {
        Flush::Fsync => assert!(
            archive.file_syncs > 0 && archive.dir_syncs > 0 && archive.syncfs == 0,
            "the archive was fsynced file by file: {archive:?}"
        ),
        Flush::Syncfs => assert!(archive.syncfs > 0, "the archive was flushed by syncfs: {archive:?}"),
    }
}

/// What the ledger records as downloaded (or as downloaded up to some length) is on the disk
/// after a power cut: the next pass finishes the file from it instead of finding it gone and
/// fetching it all again after a back-off. The temp file's directory entry must be durable,
/// not just its bytes.
#[tokio::test]
async fn a_download_the_ledger_recorded_survives_a_power_cut() {
    let bodies = Bodies::make();
    let size = bodies.big.len() as u64;
    let segment = r2_sync::sync::download::SEGMENT;
    assert!(size > 3 * segment, "the big file spans several checkpoints");
    // Crashed once the ledger says `downloaded`, and past the second checkpoint.
    for (fault, may_refetch) in [
        ("after_downloaded".to_string(), 0),
        (format!("download@{}", 2 * segment + 1), size - 2 * segment),
    ] {
        let rig = Rig::new().await;
        let mut disks = Disks::mount(&rig);
        let key = "uploads/big.mp4";
        rig.storage()
            .put(&object_key(key), &bodies.big, "video/mp4")
            .await
            .unwrap();
        let id = rig.insert_media(&NewMedia::approved(key, "big.mp4")).await;
        let seeded = [Seeded {
            id,
            key: key.into(),
            sha256: sha256_hex(&bodies.big),
            size,
        }];
        assert!(
            interrupted_pass(&rig, Flush::Fsync, &Kill::Fault(fault.clone())).await,
            "{fault} fired"
        );
        disks.power_cut(0.0, &mut StdRng::seed_from_u64(0));
        let sent = rig.s3.bytes_sent().await;
        let logs = full_pass(&rig, Flush::Fsync, &fault).await;
        invariants::check_rig(&rig, &seeded).await;
        assert_eq!(
            rig.status(id).await,
            "archived",
            "{fault}: archived by the pass after the reboot\n{logs}"
        );
        let refetched = rig.s3.bytes_sent().await - sent;
        assert!(
            refetched <= may_refetch,
            "{fault}: the pass after the reboot fetched {refetched} bytes again, more than the \
             {may_refetch} the ledger did not have\n{logs}"
        );
    }
}
