//! Network faults between r2-sync and the bucket, and rows or objects changing under a
//! transfer: the right outcome, and nothing lost.

use crate::common;

use std::time::{Duration, Instant};

use common::invariants::{self, sha256_hex, Seeded};
use common::proxy::Proxy;
use common::{media, object_key, NewMedia, Rig};

/// The bucket behind a fault proxy: r2-sync talks to `proxy`, the test to the server.
async fn behind_proxy(rig: &Rig) -> Proxy {
    let target = rig.s3.endpoint.trim_start_matches("http://").parse().unwrap();
    Proxy::start(target).await
}

async fn seed_bytes(rig: &Rig, key: &str, bytes: &[u8]) -> Seeded {
    rig.storage()
        .put(&object_key(key), bytes, "application/octet-stream")
        .await
        .unwrap();
    let mut m = NewMedia::approved(key, "data.bin");
    m.content_type = "application/octet-stream";
    let id = rig.insert_media(&m).await;
    Seeded {
        id,
        key: key.into(),
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::fill(&mut v[..]);
    v
}

fn sync_via(rig: &Rig, proxy: &Proxy) -> tokio::process::Command {
    let mut cmd = rig.command(&["sync", "--once"]);
    cmd.env("R2_ENDPOINT", format!("http://{}", proxy.addr))
        .env("VALIDATE_MEDIA", "false");
    cmd
}

/// A pass through the proxy slowed to 1 MiB/s, returned once media `id` is downloading.
async fn slowed_sync(rig: &Rig, proxy: &Proxy, id: i64) -> tokio::process::Child {
    proxy.rate(1 << 20);
    let child = sync_via(rig, proxy)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    rig.wait_for_part(id, 1).await;
    child
}

/// Lifts the slowdown and waits for the pass to end.
async fn at_full_speed(proxy: &Proxy, child: tokio::process::Child) -> std::process::Output {
    proxy.rate(0);
    child.wait_with_output().await.unwrap()
}

/// Two instances sharing one ARCHIVE_DIR, as two containers on one share, each with its own
/// STATE_DIR: the second one's start-up reconciliation leaves the first one's download in
/// progress alone, and the first archives its valid media.
#[tokio::test]
async fn a_second_instance_on_the_same_archive_leaves_the_first_ones_download_alone() {
    let rig = Rig::new().await;
    let proxy = behind_proxy(&rig).await;
    let src = tempfile::tempdir().unwrap();
    let wav = std::fs::read(media::tone_lasting(src.path(), "long.wav", 440, 200.0)).unwrap();
    let seeded = seed_bytes(&rig, "uploads/long.wav", &wav).await;
    proxy.rate(1 << 20);
    let first = sync_via(&rig, &proxy)
        .env("VALIDATE_MEDIA", "true")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    rig.wait_for_part(seeded.id, 1).await;

    let second = rig
        .command(&["sync", "--once"])
        .env("STATE_DIR", rig.dir.path().join("second-state"))
        .output()
        .await
        .unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stdout));
    let out = at_full_speed(&proxy, first).await;
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{logs}");
    assert_eq!(
        invariants::audits(&rig, seeded.id, "media.sync_failed").await,
        0,
        "{logs}"
    );
    invariants::check_rig(&rig, &[seeded]).await;
}

/// A file removed from under ffprobe (by anything: another process, an operator) is a
/// transient fault, never a verdict on the media: the row is not failed, and the next pass
/// fetches and archives it.
#[tokio::test]
async fn a_file_vanishing_under_ffprobe_is_fetched_again_not_failed() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let wav = std::fs::read(media::tone(src.path(), "t.wav", 440)).unwrap();
    let seeded = seed_bytes(&rig, "uploads/t.wav", &wav).await;
    // ffprobe's input (its last argument) disappears just before the real ffprobe reads it.
    let vanishing = src.path().join("vanishing-ffprobe");
    std::fs::write(
        &vanishing,
        "#!/bin/sh\nfor last; do :; done\nrm -f \"$last\"\nexec ffprobe \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&vanishing, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let out = rig
        .command(&["sync", "--once"])
        .env("FFPROBE_PATH", &vanishing)
        .output()
        .await
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("No such file or directory; downloading again"), "{logs}");
    assert_eq!(rig.status(seeded.id).await, "approved", "not failed: {logs}");
    assert_eq!(invariants::audits(&rig, seeded.id, "media.sync_failed").await, 0);

    // The retry waits for its backoff; a later pass (its time come) archives the file.
    let ledger = rig.state_dir().join(r2_sync::context::LEDGER_FILE);
    let ledger_handle = r2_sync::state::Ledger::open(&ledger).unwrap();
    ledger_handle.update(seeded.id as u64, |e| e.retry_after = 0).unwrap();
    drop(ledger_handle);
    let out = rig.command(&["sync", "--once"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    invariants::check_rig(&rig, &[seeded]).await;
}

#[tokio::test]
async fn connections_cut_mid_body_resume_and_complete() {
    let rig = Rig::new().await;
    let proxy = behind_proxy(&rig).await;
    let seeded = vec![seed_bytes(&rig, "uploads/cut.bin", &random(3 << 20)).await];
    proxy.cut_after(400_000);
    let out = sync_via(&rig, &proxy).output().await.unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{logs}");
    assert!(
        logs.contains("transfer attempt failed; retrying"),
        "the cuts happened: {logs}"
    );
    invariants::check_rig(&rig, &seeded).await;
    let sent = rig.s3.bytes_sent().await;
    assert!(
        sent < seeded[0].size * 3 / 2,
        "resumed, not restarted: {sent} bytes sent for {}",
        seeded[0].size
    );
}

#[tokio::test]
async fn a_stalled_transfer_is_abandoned_and_retried() {
    let rig = Rig::new().await;
    let proxy = behind_proxy(&rig).await;
    let seeded = vec![seed_bytes(&rig, "uploads/stall.bin", &random(1 << 20)).await];
    proxy.stall(true);
    let started = Instant::now();
    let child = sync_via(&rig, &proxy)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.stall(false);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{logs}");
    assert!(started.elapsed() < Duration::from_secs(60));
    invariants::check(&rig, &rig.archive_dir(), &seeded, None).await;
}

/// A bucket that accepts connections and never answers: the pass gives up once a few
/// requests got no answer (test builds time a request out after 4 s) instead of paying every
/// file's timeouts and retries, fails no row, and a pass once the bucket is back archives all.
#[tokio::test]
async fn a_bucket_that_never_answers_defers_the_batch_within_a_bound() {
    let rig = Rig::new().await;
    let proxy = behind_proxy(&rig).await;
    let mut seeded = Vec::new();
    for (i, len) in [1 << 10, 200 << 10, 3 << 20, 5 << 20, 64 << 10, 2 << 20]
        .into_iter()
        .enumerate()
    {
        seeded.push(seed_bytes(&rig, &format!("uploads/dead-{i}.bin"), &random(len)).await);
    }
    proxy.stall(true);
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(120), sync_via(&rig, &proxy).output())
        .await
        .expect("the pass ends")
        .unwrap();
    let took = started.elapsed();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "files were deferred: {logs}");
    // Before: rust-s3's own retry and four in-pass attempts per file, 40 s and more.
    assert!(
        took < Duration::from_secs(15),
        "a dead bucket held the pass {took:?}: {logs}"
    );
    assert!(logs.contains("bucket unreachable"), "{logs}");
    for s in &seeded {
        assert_eq!(rig.status(s.id).await, "approved", "{logs}");
        assert_eq!(invariants::audits(&rig, s.id, "media.sync_failed").await, 0);
    }

    proxy.stall(false);
    let ledger = r2_sync::state::Ledger::open(&rig.state_dir().join(r2_sync::context::LEDGER_FILE)).unwrap();
    for s in &seeded {
        ledger.update(s.id as u64, |e| e.retry_after = 0).unwrap();
    }
    drop(ledger);
    let out = sync_via(&rig, &proxy).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    invariants::check_rig(&rig, &seeded).await;
}

#[tokio::test]
async fn an_object_overwritten_mid_transfer_is_fetched_again_whole() {
    let rig = Rig::new().await;
    let proxy = behind_proxy(&rig).await;
    let mut seeded = seed_bytes(&rig, "uploads/changing.bin", &random(2 << 20)).await;
    let child = slowed_sync(&rig, &proxy, seeded.id).await;
    let replacement = random(1 << 20);
    rig.storage()
        .put(&object_key(&seeded.key), &replacement, "application/octet-stream")
        .await
        .unwrap();
    let out = at_full_speed(&proxy, child).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    seeded.sha256 = sha256_hex(&replacement);
    seeded.size = replacement.len() as u64;
    invariants::check(&rig, &rig.archive_dir(), &[seeded], None).await;
}

#[tokio::test]
async fn an_object_deleted_mid_transfer_fails_the_row_and_archives_nothing() {
    let rig = Rig::new().await;
    let proxy = behind_proxy(&rig).await;
    let seeded = seed_bytes(&rig, "uploads/vanishing.bin", &random(2 << 20)).await;
    let child = slowed_sync(&rig, &proxy, seeded.id).await;
    rig.storage().delete(&object_key(&seeded.key)).await.unwrap();
    let out = at_full_speed(&proxy, child).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(rig.status(seeded.id).await, "failed");
    let files = invariants::archive_files(&rig.archive_dir());
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test]
async fn a_row_soft_deleted_mid_transfer_is_left_alone() {
    let rig = Rig::new().await;
    let proxy = behind_proxy(&rig).await;
    let seeded = seed_bytes(&rig, "uploads/deleted.bin", &random(2 << 20)).await;
    let child = slowed_sync(&rig, &proxy, seeded.id).await;
    let c = rig.db.client().await;
    c.execute("UPDATE media SET deleted_at = now() WHERE id = $1", &[&seeded.id])
        .await
        .unwrap();
    let out = at_full_speed(&proxy, child).await;
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("abandoned"), "{logs}");
    assert_eq!(
        rig.status(seeded.id).await,
        "approved",
        "r2-sync never touches a deleted row"
    );
    assert!(
        rig.storage().head(&object_key(&seeded.key)).await.is_ok(),
        "object left in R2"
    );
    assert!(invariants::archive_files(&rig.archive_dir()).is_empty());
}

#[tokio::test]
async fn a_failed_row_approved_again_with_a_fixed_upload_is_archived() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let noise = std::fs::read(media::corrupt(src.path(), "clip.mp4", 50_000)).unwrap();
    let mut seeded = seed_bytes(&rig, "uploads/retry.mp4", &noise).await;
    let out = rig.command(&["sync", "--once"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rig.status(seeded.id).await, "failed");

    let fixed = std::fs::read(media::video(src.path(), "fixed.mp4", 1)).unwrap();
    rig.storage()
        .put(&object_key(&seeded.key), &fixed, "video/mp4")
        .await
        .unwrap();
    let c = rig.db.client().await;
    c.execute("UPDATE media SET status = 'approved' WHERE id = $1", &[&seeded.id])
        .await
        .unwrap();
    let out = rig.command(&["sync", "--once"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    seeded.sha256 = sha256_hex(&fixed);
    // The earlier failure's audit row stays; the row is now archived once.
    assert_eq!(rig.status(seeded.id).await, "archived");
    let archived: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE entity_id = $1 AND action = 'media.archived'",
            &[&seeded.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(archived, 1);
    let files: Vec<_> = invariants::archive_files(&rig.archive_dir());
    assert_eq!(
        files.iter().filter(|p| !p.to_string_lossy().ends_with(".json")).count(),
        1,
        "{files:?}"
    );
}

/// A recorded download whose temp file is gone while its reserved path holds other bytes
/// (an older archived version of the same media, kept when the row was approved again):
/// those bytes are never taken for the download. The object is fetched again at once and
/// archived beside them; the bucket keeps it until then.
#[tokio::test]
async fn a_lost_temp_file_is_fetched_again_never_replaced_by_what_sits_at_its_path() {
    let rig = Rig::new().await;
    let bytes = random(300_000);
    let s = seed_bytes(&rig, "uploads/v2.bin", &bytes).await;
    let approved: chrono::DateTime<chrono::Utc> = media_value(&rig, "approved_at", s.id).await;
    let rel = r2_sync::archive::relative_path(s.id, approved, "data.bin", &s.key);
    let older = rig.archive_dir().join(&rel);
    std::fs::create_dir_all(older.parent().unwrap()).unwrap();
    std::fs::write(&older, b"an older version").unwrap();
    let identity = serde_json::json!({ "media_id": s.id, "size": 16, "sha256": sha256_hex(b"an older version") });
    std::fs::write(r2_sync::archive::sidecar_path(&older), identity.to_string()).unwrap();

    let syncer = rig.syncer(&[("VALIDATE_MEDIA", "false")]);
    let mut entry = r2_sync::state::Entry::new(s.id as u64, s.key.clone());
    entry.archive_path = Some(rel.display().to_string());
    entry.temp_path = Some(rig.part(s.id).display().to_string());
    (entry.size, entry.bytes_done, entry.sha256) = (Some(s.size), s.size, Some(s.sha256.clone()));
    entry.etag = Some(rig.storage().head(&object_key(&s.key)).await.unwrap().etag);
    common::ledger::store_at(&syncer.ctx.ledger, &mut entry, r2_sync::state::Stage::Downloaded);

    let shutdown = tokio_util::sync::CancellationToken::new();
    let first = syncer.pass(&shutdown).await;
    assert_eq!(first.archived, 1, "fetched again in the same pass: {first:?}");

    assert_eq!(
        std::fs::read(&older).unwrap(),
        b"an older version",
        "the older version is untouched"
    );
    let path: String = media_value(&rig, "archive_path", s.id).await;
    assert_ne!(std::path::Path::new(&path), rel.as_path());
    assert_eq!(
        sha256_hex(&std::fs::read(rig.archive_dir().join(&path)).unwrap()),
        s.sha256
    );
    assert!(
        rig.storage().head(&object_key(&s.key)).await.is_err(),
        "deleted once the right bytes were archived"
    );
}

/// One column of media `id`'s row.
async fn media_value<T: for<'a> tokio_postgres::types::FromSql<'a>>(rig: &Rig, column: &str, id: i64) -> T {
    let sql = format!("SELECT {column} FROM media WHERE id = $1");
    rig.db.client().await.query_one(&sql, &[&id]).await.unwrap().get(0)
}
