//! Crash anywhere: the real binary aborts at every stage boundary and at random byte offsets
//! mid-download (test builds' `R2SYNC_FAULT`), is restarted, and the invariants hold.
//! `make test` builds with `--features fault-injection`; without it this file is empty.
#![cfg(feature = "fault-injection")]

use crate::common;

use common::invariants::{self, sha256_hex, Seeded};
use common::{media, object_key, NewMedia, Rig};

/// What the backend recorded of each upload's size: nothing, or the truth (small objects
/// are then fetched whole by one request and placed before the ledger records them).
#[derive(Clone, Copy)]
enum Sizes {
    Unknown,
    Known,
}

async fn seed_file(rig: &Rig, bytes: &[u8], key: &str, sizes: Sizes) -> Seeded {
    rig.storage().put(&object_key(key), bytes, "video/mp4").await.unwrap();
    let file_size = match sizes {
        Sizes::Unknown => None,
        Sizes::Known => Some(bytes.len() as i64),
    };
    let id = rig
        .insert_media(&NewMedia {
            file_size,
            ..NewMedia::approved(key, "clip.mp4")
        })
        .await;
    Seeded {
        id,
        key: key.to_owned(),
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
    }
}

/// Two good videos (one of a few MB, so downloads span many checkpoints) and a corrupt file.
async fn seed(rig: &Rig, sizes: Sizes) -> Vec<Seeded> {
    let src = tempfile::tempdir().unwrap();
    let big = std::fs::read(media::video_sized(src.path(), "big.mp4", 3, "320x240", 60)).unwrap();
    let small = std::fs::read(media::video(src.path(), "small.mkv", 1)).unwrap();
    let noise = std::fs::read(media::corrupt(src.path(), "noise.mp4", 300_000)).unwrap();
    vec![
        seed_file(rig, &big, "uploads/big.mp4", sizes).await,
        seed_file(rig, &small, "uploads/small.mkv", sizes).await,
        seed_file(rig, &noise, "uploads/noise.mp4", sizes).await,
    ]
}

async fn run(rig: &Rig, fault: Option<&str>) -> std::process::Output {
    let mut cmd = rig.command(&["sync", "--once"]);
    cmd.env("SYNC_CONCURRENCY", "1");
    if let Some(fault) = fault {
        cmd.env("R2SYNC_FAULT", fault);
    }
    cmd.output().await.unwrap()
}

/// Crashes at `fault`, restarts, and checks the promise.
async fn crash_and_recover(fault: &str, sizes: Sizes) {
    let rig = Rig::new().await;
    let seeded = seed(&rig, sizes).await;
    let crashed = run(&rig, Some(fault)).await;
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    assert!(
        !crashed.status.success() && stderr.contains("fault injection: crashing"),
        "{fault} never fired: {stderr}\n{}",
        String::from_utf8_lossy(&crashed.stdout)
    );
    let sent_before = rig.s3.bytes_sent().await;

    let out = run(&rig, None).await;
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{fault}: the recovery run ends normally\n{logs}"
    );
    // Shown only when the check below fails.
    eprintln!("recovery run after {fault}:\n{logs}");
    invariants::check_rig(&rig, &seeded).await;
    if let Some(offset) = fault.strip_prefix("download@") {
        // The first file is the big one; resuming refetches at most one checkpoint interval.
        let total: u64 = seeded.iter().map(|s| s.size).sum();
        let refetched = rig.s3.bytes_sent().await - sent_before;
        let offset: u64 = offset.parse().unwrap();
        let checkpoint = r2_sync::sync::download::SEGMENT;
        assert!(
            refetched <= total - (offset / checkpoint) * checkpoint + checkpoint,
            "{fault}: refetched {refetched} of {total} bytes"
        );
    }
}

#[tokio::test]
async fn crash_at_every_stage_boundary() {
    for point in r2_sync::fault::POINTS {
        crash_and_recover(point, Sizes::Unknown).await;
    }
}

#[tokio::test]
async fn crash_at_every_stage_boundary_with_sizes_known() {
    for point in r2_sync::fault::POINTS {
        crash_and_recover(point, Sizes::Known).await;
    }
}

/// A small file is placed before the ledger records it: a crash right after the placement
/// leaves a file the ledger does not know. The restart must recognise it (same media, same
/// bytes) instead of archiving a second copy beside it.
#[tokio::test]
async fn a_small_file_placed_but_not_recorded_is_found_again_not_copied_twice() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let small = std::fs::read(media::video(src.path(), "small.mkv", 1)).unwrap();
    let seeded = [seed_file(&rig, &small, "uploads/small.mkv", Sizes::Known).await];
    let crashed = run(&rig, Some("after_rename")).await;
    assert!(!crashed.status.success(), "the crash fired");
    let placed = placed_files(&rig);
    assert_eq!(placed.len(), 2, "the file and its sidecar were placed: {placed:?}");
    let ledger = r2_sync::state::Ledger::open(&rig.state_dir().join(r2_sync::context::LEDGER_FILE)).unwrap();
    let stage = ledger.get(seeded[0].id as u64).unwrap().map(|e| e.stage());
    assert!(
        stage.is_none_or(|s| s < r2_sync::state::Stage::Downloaded),
        "the ledger had not recorded the download: {stage:?}"
    );
    drop(ledger);

    let out = run(&rig, None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    invariants::check_rig(&rig, &seeded).await;
    assert_eq!(placed_files(&rig), placed, "the same two files, nothing beside them");
}

/// The archive's files outside the temp directory, sorted.
fn placed_files(rig: &Rig) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = invariants::archive_files(&rig.archive_dir())
        .into_iter()
        .filter(|p| !p.starts_with(".r2-sync-tmp"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn crash_at_random_offsets_mid_download() {
    let src = tempfile::tempdir().unwrap();
    let big = std::fs::metadata(media::video_sized(src.path(), "big.mp4", 3, "320x240", 60))
        .unwrap()
        .len();
    assert!(
        big > 4 * r2_sync::sync::download::SEGMENT,
        "the big file spans several checkpoints"
    );
    for _ in 0..8 {
        let offset = rand::random_range(1..big);
        crash_and_recover(&format!("download@{offset}"), Sizes::Unknown).await;
    }
}

#[tokio::test]
async fn a_row_rejected_while_r2_sync_was_down_is_abandoned_at_start_up() {
    let rig = Rig::new().await;
    let seeded = seed(&rig, Sizes::Unknown).await;
    let big = &seeded[0];
    // Past the big file's first checkpoint (the ledger then knows the partial download for
    // sure), and past anything the two small files can reach.
    let offset = 2 * r2_sync::sync::download::SEGMENT + 1;
    assert!(seeded[1..].iter().all(|s| s.size < offset) && big.size > offset);
    let crashed = run(&rig, Some(&format!("download@{offset}"))).await;
    assert!(!crashed.status.success(), "the crash fired");
    let part = rig.part(big.id);
    assert!(part.exists(), "a partial download was left behind");
    let c = rig.db.client().await;
    c.execute("UPDATE media SET status = 'rejected' WHERE id = $1", &[&big.id])
        .await
        .unwrap();

    let out = run(&rig, None).await;
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("row no longer approved; abandoned"), "{logs}");
    assert!(!part.exists(), "its temp file is removed");
    assert!(
        rig.storage().head(&object_key(&big.key)).await.is_ok(),
        "its object stays in R2"
    );
    let ledger = r2_sync::state::Ledger::open(&rig.state_dir().join(r2_sync::context::LEDGER_FILE)).unwrap();
    assert_eq!(
        ledger.get(big.id as u64).unwrap().unwrap().stage(),
        r2_sync::state::Stage::Abandoned
    );
}

/// A downloaded file the ledger records but the disk lost (a power cut took its not yet
/// durable temp file, or something removed it) is fetched again in the same pass: the loss is
/// ours, not the object's, so it costs no back-off and no failed attempt.
#[tokio::test]
async fn a_recorded_download_lost_from_disk_is_fetched_again_at_once() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    // Big enough to be fetched in segments, so that `downloaded` is recorded at once.
    let big = std::fs::read(media::video_sized(src.path(), "big.mp4", 3, "320x240", 60)).unwrap();
    let seeded = [seed_file(&rig, &big, "uploads/big.mp4", Sizes::Unknown).await];
    let crashed = run(&rig, Some("after_downloaded")).await;
    assert!(!crashed.status.success(), "after_downloaded fired");
    let part = rig.part(seeded[0].id);
    assert_eq!(
        std::fs::metadata(&part).map(|m| m.len()).ok(),
        Some(big.len() as u64),
        "the whole download is on disk: {part:?}"
    );
    std::fs::remove_file(&part).unwrap();

    let out = run(&rig, None).await;
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("downloaded file lost; fetching it again now"), "{logs}");
    assert_eq!(rig.status(seeded[0].id).await, "archived", "in the same pass\n{logs}");
    invariants::check_rig(&rig, &seeded).await;
}
