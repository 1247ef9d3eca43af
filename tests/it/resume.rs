//! Interrupted transfers: a SIGKILLed process resumes with a ranged GET; a row rejected
//! while its file downloads is not archived.

use crate::common;

use std::time::Duration;

use common::{object_key, NewMedia, Rig};
use sha2::{Digest, Sha256};

const BIG: usize = 150 << 20;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::fill(&mut data[..]);
    data
}

async fn seed_big(rig: &Rig, key: &str) -> (i64, Vec<u8>) {
    let data = random_bytes(BIG);
    rig.storage()
        .put(&object_key(key), &data, "application/octet-stream")
        .await
        .unwrap();
    let mut m = NewMedia::approved(key, "big.bin");
    m.content_type = "application/octet-stream";
    (rig.insert_media(&m).await, data)
}

#[tokio::test]
async fn sigkill_mid_download_resumes_fetching_only_the_missing_bytes() {
    let rig = Rig::new().await;
    let (id, data) = seed_big(&rig, "uploads/big.bin").await;

    let mut first = rig
        .command(&["sync", "--once"])
        .env("VALIDATE_MEDIA", "false")
        .spawn()
        .unwrap();
    // Past the first 64 MiB checkpoint, then kill without warning.
    let part = rig.wait_for_part(id, 80 << 20).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let sent_before = rig.s3.bytes_sent().await;
    assert!(sent_before < BIG as u64, "killed before the end");

    let out = rig
        .command(&["sync", "--once"])
        .env("VALIDATE_MEDIA", "false")
        .output()
        .await
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{logs}");
    assert!(logs.contains("partial download will resume"), "{logs}");
    let second = rig.s3.bytes_sent().await - sent_before;
    assert!(
        second <= (BIG - (64 << 20)) as u64,
        "resumed run fetched {second} bytes of {BIG}"
    );

    let c = rig.db.client().await;
    let path: String = c
        .query_one(
            "SELECT archive_path FROM media WHERE id = $1 AND status = 'archived'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let archived = std::fs::read(rig.archive_dir().join(path)).unwrap();
    assert_eq!(
        Sha256::digest(&archived),
        Sha256::digest(&data),
        "resumed file is byte-identical"
    );
    assert!(!part.exists());
}

#[tokio::test]
async fn a_row_rejected_while_downloading_is_not_archived_and_stays_in_r2() {
    let rig = Rig::new().await;
    let (id, _) = seed_big(&rig, "uploads/rejected.bin").await;
    let syncer = rig.syncer(&[("VALIDATE_MEDIA", "false")]);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pass = {
        let (syncer, shutdown) = (syncer.clone(), shutdown.clone());
        tokio::spawn(async move { syncer.pass(&shutdown).await })
    };
    let part = rig.wait_for_part(id, 1).await;
    rig.db
        .client()
        .await
        .execute("UPDATE media SET status = 'rejected' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let report = pass.await.unwrap();
    assert_eq!(report.abandoned, 1, "{report:?}");
    let status = rig.status(id).await;
    assert_eq!(status, "rejected", "the moderator's decision stands");
    assert!(
        rig.storage().head(&object_key("uploads/rejected.bin")).await.is_ok(),
        "object left in R2"
    );
    let entry = syncer.ctx.ledger.get(id as u64).unwrap().unwrap();
    assert_eq!(entry.stage(), r2_sync::state::Stage::Abandoned);
    assert!(entry.error.unwrap().contains("rejected"));
    assert!(!part.exists(), "temp file removed");
    let archived: Vec<_> = std::fs::read_dir(rig.archive_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != ".r2-sync-tmp")
        .collect();
    assert!(archived.is_empty(), "nothing archived");
}

#[tokio::test]
async fn sigterm_mid_download_checkpoints_and_exits_promptly() {
    let rig = Rig::new().await;
    let (id, _) = seed_big(&rig, "uploads/term.bin").await;
    let child = rig
        .command(&["sync", "--once"])
        .env("VALIDATE_MEDIA", "false")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let part = rig.wait_for_part(id, 1 << 20).await;
    let (out, took) = common::sigterm(child).await;
    assert!(took < Duration::from_secs(10));
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("shutdown requested"), "{logs}");
    assert!(logs.contains("interrupted; progress kept"), "{logs}");

    let id_arg = id.to_string();
    let status = rig
        .command(&["status", "--json", "--media-id", &id_arg])
        .output()
        .await
        .unwrap();
    let entry: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(entry["stage"], "downloading");
    let done = entry["bytes_done"].as_u64().unwrap();
    assert!(
        done > 0 && done == std::fs::metadata(&part).unwrap().len(),
        "checkpoint {done} matches the temp file"
    );
    let in_archive: Vec<_> = std::fs::read_dir(rig.archive_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != ".r2-sync-tmp")
        .collect();
    assert!(in_archive.is_empty(), "no partial file in the archive proper");
    let status: String = rig
        .db
        .client()
        .await
        .query_one("SELECT status FROM media WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "approved");
}

#[tokio::test]
async fn sigterm_does_not_wait_for_a_slow_ffprobe() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let clip = std::fs::read(common::media::video(src.path(), "clip.mp4", 1)).unwrap();
    rig.storage()
        .put(&object_key("uploads/clip.mp4"), &clip, "video/mp4")
        .await
        .unwrap();
    let id = rig
        .insert_media(&NewMedia::approved("uploads/clip.mp4", "clip.mp4"))
        .await;
    // An ffprobe that hangs (as on a pathological file), saying when it started.
    let started = src.path().join("ffprobe-started");
    let fake = src.path().join("ffprobe");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch '{}'\nexec sleep 60\n", started.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let child = rig
        .command(&["sync", "--once"])
        .env("FFPROBE_PATH", &fake)
        .spawn()
        .unwrap();
    for _ in 0..10_000 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(started.exists(), "ffprobe was reached");
    let (out, took) = common::sigterm(child).await;
    let status = out.status;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(status.code().is_some(), "a clean exit, not a crash");
    let row = rig.status(id).await;
    assert_eq!(row, "approved", "validated again on the next start");
    assert!(rig.storage().head(&object_key("uploads/clip.mp4")).await.is_ok());
}
