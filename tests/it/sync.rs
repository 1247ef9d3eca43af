//! The sync pipeline end to end: the real binary against real PostgreSQL, S3 server and
//! ffprobe.

use crate::common;

use std::path::{Path, PathBuf};

use common::{media, object_key, NewMedia, Rig};
use sha2::{Digest, Sha256};

/// Uploads `file` under `key` and inserts an approved row for it.
async fn seed(rig: &Rig, file: &Path, key: &str, original: &str) -> i64 {
    let bytes = std::fs::read(file).unwrap();
    rig.storage().put(&object_key(key), &bytes, "video/mp4").await.unwrap();
    rig.insert_media(&NewMedia::approved(key, original)).await
}

async fn row(rig: &Rig, id: i64) -> (String, Option<String>) {
    let r = rig
        .db
        .client()
        .await
        .query_one("SELECT status, archive_path FROM media WHERE id = $1", &[&id])
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

async fn in_bucket(rig: &Rig, key: &str) -> bool {
    rig.storage().head(&object_key(key)).await.is_ok()
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn sync_once(rig: &Rig, extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = rig.command(&["sync", "--once"]);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn a_pass_archives_good_media_and_fails_broken_files_keeping_them_in_r2() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let mut good = Vec::new();
    for (i, name) in ["one.mp4", "two.mkv", "three.mp4"].iter().enumerate() {
        let file = media::video(src.path(), name, 2);
        let key = format!("uploads/{i}/{name}");
        good.push((seed(&rig, &file, &key, name).await, file, key));
    }
    let corrupt = media::corrupt(src.path(), "noise.mp4", 40_000);
    let corrupt_id = seed(&rig, &corrupt, "uploads/noise.mp4", "noise.mp4").await;
    let truncated = media::truncated(src.path(), "half.mp4");
    let truncated_id = seed(&rig, &truncated, "uploads/half.mp4", "half.mp4").await;

    let (code, logs) = sync_once(&rig, &[]).await;
    assert_eq!(code, Some(1), "failures make --once exit non-zero\n{logs}");

    for (id, file, key) in &good {
        let (status, path) = row(&rig, *id).await;
        assert_eq!(status, "archived", "{logs}");
        let path = path.expect("archive_path set");
        let archived = rig.archive_dir().join(&path);
        assert_eq!(sha256(&archived), sha256(file), "byte-identical");
        assert!(path.contains(&format!("/{id}-")), "{path}");
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{}.json", archived.display())).unwrap()).unwrap();
        assert_eq!(sidecar["media_id"], *id);
        assert_eq!(sidecar["sha256"], sha256(file));
        assert_eq!(sidecar["r2_key"], key.as_str());
        assert_eq!(sidecar["size"], std::fs::metadata(file).unwrap().len());
        assert!(sidecar["probe"]["duration_secs"].as_f64().unwrap() > 1.5);
        assert!(sidecar["probe"]["streams"].as_array().unwrap().len() >= 2);
        for field in [
            "user_id",
            "title",
            "description",
            "original_filename",
            "content_type",
            "etag",
            "approved_at",
            "archived_at",
            "r2_sync_version",
        ] {
            assert!(!sidecar[field].is_null(), "sidecar lacks {field}");
        }
        assert_eq!(common::invariants::audits(&rig, *id, "media.archived").await, 1);
        assert!(!in_bucket(&rig, key).await, "object deleted after recording");
    }
    for (id, key) in [(corrupt_id, "uploads/noise.mp4"), (truncated_id, "uploads/half.mp4")] {
        assert_eq!(row(&rig, id).await.0, "failed");
        assert_eq!(common::invariants::audits(&rig, id, "media.sync_failed").await, 1);
        assert!(in_bucket(&rig, key).await, "a failed file stays in R2");
    }
    let leftovers: Vec<_> = files_under(&rig.archive_dir())
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains(".r2-sync-tmp") || p.extension().is_some_and(|e| e == "part" || e == "tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every log line is JSON"
    );
    assert!(!logs.contains(common::SECRET_KEY));
    let leases: i64 = rig
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM r2_sync_leases", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leases, 0,
        "every row reached an outcome, so the pass released every lease"
    );

    // A second pass finds nothing new and changes nothing.
    let before = files_under(&rig.archive_dir()).len();
    let (code, _) = sync_once(&rig, &[]).await;
    assert_eq!(code, Some(0));
    assert_eq!(files_under(&rig.archive_dir()).len(), before);
}

#[tokio::test]
async fn hostile_names_and_keys_land_inside_the_archive() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let file = media::video(src.path(), "v.mp4", 1);
    let long = "x".repeat(1000) + ".mp4";
    let names = [
        "../../etc/passwd",
        "..",
        "",
        "bad\u{1}\u{7f}name\n.mp4",
        long.as_str(),
        "/absolute/path.mp4",
        "same.mp4",
        "same.mp4",
        "ＮＵＬ∕..∕look-alike.mp4",
    ];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = format!("uploads/{i}/we ird %20 näme?&=.mp4");
        ids.push(seed(&rig, &file, &key, name).await);
    }
    let (code, logs) = sync_once(&rig, &[("BATCH_SIZE", "20")]).await;
    assert_eq!(code, Some(0), "{logs}");
    let archive = rig.archive_dir().canonicalize().unwrap();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        let (status, path) = row(&rig, id).await;
        assert_eq!(status, "archived");
        let path = path.unwrap();
        let full = archive.join(&path).canonicalize().unwrap();
        assert!(full.starts_with(&archive), "{path} escapes the archive");
        assert!(full.file_name().unwrap().len() <= 255);
        assert!(!path.chars().any(char::is_control), "{path:?}");
        assert!(seen.insert(path.clone()), "two rows share {path}");
    }
    assert!(!Path::new("/etc/passwd.json").exists());
}

#[tokio::test]
async fn dry_run_and_shadow_change_nothing_they_must_not() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let file = media::video(src.path(), "v.mp4", 1);
    let id = seed(&rig, &file, "uploads/v.mp4", "v.mp4").await;

    let (code, logs) = sync_once(&rig, &[("DRY_RUN", "true")]).await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("would archive"), "{logs}");
    assert_eq!(row(&rig, id).await.0, "approved");
    assert!(in_bucket(&rig, "uploads/v.mp4").await);
    assert!(files_under(&rig.archive_dir()).is_empty());
    let state = files_under(&rig.state_dir());
    assert!(state.is_empty(), "a dry run writes nothing to STATE_DIR: {state:?}");

    let shadow = rig.dir.path().join("shadow");
    std::fs::create_dir_all(&shadow).unwrap();
    let (code, logs) = sync_once(&rig, &[("SHADOW_DIR", shadow.to_str().unwrap())]).await;
    assert_eq!(code, Some(0), "{logs}");
    let shadowed: Vec<_> = files_under(&shadow)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .collect();
    assert_eq!(shadowed.len(), 1, "{shadowed:?}");
    assert_eq!(sha256(&shadowed[0]), sha256(&file));
    assert_eq!(
        row(&rig, id).await.0,
        "approved",
        "shadow mode writes nothing to the database"
    );
    assert_eq!(common::invariants::audits(&rig, id, "media.archived").await, 0);
    assert!(in_bucket(&rig, "uploads/v.mp4").await, "shadow mode deletes nothing");
    assert!(files_under(&rig.archive_dir()).is_empty());

    // Cutover: a normal pass then archives it for real.
    let (code, logs) = sync_once(&rig, &[]).await;
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(row(&rig, id).await.0, "archived");
    assert!(!in_bucket(&rig, "uploads/v.mp4").await);
}

/// An install that ran for real, switched to DRY_RUN: its ledger, its partial download and
/// an orphaned temp file are left exactly as they were (no reconciliation, no commit).
#[tokio::test]
async fn a_dry_run_over_an_existing_ledger_changes_nothing_in_it_or_beside_it() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let file = media::video(src.path(), "v.mp4", 1);
    let archived = seed(&rig, &file, "uploads/a.mp4", "a.mp4").await;
    assert_eq!(sync_once(&rig, &[]).await.0, Some(0));
    assert_eq!(row(&rig, archived).await.0, "archived");
    let waiting = seed(&rig, &file, "uploads/w.mp4", "w.mp4").await;
    let orphan = rig.archive_dir().join(".r2-sync-tmp").join("999.part");
    std::fs::write(&orphan, b"left by a crash").unwrap();
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = files_under(dir)
            .into_iter()
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let (state, archive) = (snapshot(&rig.state_dir()), snapshot(&rig.archive_dir()));

    let (code, logs) = sync_once(&rig, &[("DRY_RUN", "true")]).await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("would archive"), "{logs}");
    assert!(
        snapshot(&rig.state_dir()) == state,
        "the dry run changed STATE_DIR: {logs}"
    );
    assert!(
        snapshot(&rig.archive_dir()) == archive,
        "the dry run changed the archive: {logs}"
    );
    assert_eq!(row(&rig, waiting).await.0, "approved");
}

#[tokio::test]
async fn two_instances_on_one_database_archive_each_file_exactly_once() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let file = media::video(src.path(), "v.mp4", 1);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(seed(&rig, &file, &format!("uploads/{i}.mp4"), "v.mp4").await);
    }
    let mut runs = Vec::new();
    for n in 0..2 {
        let state = rig.dir.path().join(format!("state-{n}"));
        let archive = rig.dir.path().join(format!("archive-{n}"));
        std::fs::create_dir_all(&archive).unwrap();
        let mut cmd = rig.command(&["sync", "--once"]);
        cmd.env("STATE_DIR", &state)
            .env("ARCHIVE_DIR", &archive)
            .env("BATCH_SIZE", "8");
        runs.push(cmd.output());
    }
    let outs = futures::future::join_all(runs).await;
    for out in &outs {
        assert!(
            out.as_ref().unwrap().status.success(),
            "{}",
            String::from_utf8_lossy(&out.as_ref().unwrap().stdout)
        );
    }
    let mut total = 0;
    for n in 0..2 {
        total += files_under(&rig.dir.path().join(format!("archive-{n}")))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
            .count();
    }
    assert_eq!(
        total,
        ids.len(),
        "each file archived exactly once across both instances"
    );
    for id in ids {
        assert_eq!(row(&rig, id).await.0, "archived");
        assert_eq!(common::invariants::audits(&rig, id, "media.archived").await, 1);
    }
}

#[tokio::test]
async fn shadow_failures_owe_nothing_and_dry_run_creates_nothing() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let noise = media::corrupt(src.path(), "noise.mp4", 30_000);
    let id = seed(&rig, &noise, "uploads/noise.mp4", "noise.mp4").await;

    let (code, _) = sync_once(&rig, &[("DRY_RUN", "true")]).await;
    assert_eq!(code, Some(0));
    let c = rig.db.client().await;
    let leases: i64 = c
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'r2_sync_leases'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leases, 0, "a dry run creates nothing, not even r2-sync's own table");

    let shadow = rig.dir.path().join("shadow");
    std::fs::create_dir_all(&shadow).unwrap();
    let (code, _) = sync_once(&rig, &[("SHADOW_DIR", shadow.to_str().unwrap())]).await;
    assert_eq!(code, Some(1), "the corrupt file is reported");
    let status = rig.command(&["status", "--json"]).output().await.unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        summary["stages"],
        serde_json::json!({ "shadowed": 1 }),
        "no failure record is owed: {summary}"
    );
    assert_eq!(summary["owed"]["failure_records"], 0, "{summary}");
    assert_eq!(row(&rig, id).await.0, "approved");

    // At cutover the file is judged anew and its failure recorded then.
    let (code, _) = sync_once(&rig, &[]).await;
    assert_eq!(code, Some(1));
    assert_eq!(row(&rig, id).await.0, "failed");
    assert_eq!(common::invariants::audits(&rig, id, "media.sync_failed").await, 1);
}

/// Objects the row says are small are fetched by one GET that also stands in for the HEAD,
/// whether the row's size is right or understated (the rest is then streamed), and empty
/// objects too; rows without a size take the HEAD path. Both ways of making files durable
/// (shared syncfs, per-file fsync) archive every byte.
#[tokio::test]
async fn row_sizes_right_wrong_or_missing_archive_every_byte_with_either_durability() {
    let random = |n: usize| (0..n).map(|_| rand::random::<u8>()).collect::<Vec<u8>>();
    for syncfs in ["true", "false"] {
        let rig = Rig::new().await;
        let cases = [
            ("blobs/exact.bin", random(300_000), Some(300_000)),
            ("blobs/understated.bin", random(3 << 20), Some(1_000)),
            ("blobs/empty.bin", Vec::new(), Some(0)),
            ("blobs/unknown.bin", random(5_000), None),
        ];
        let mut ids = Vec::new();
        for (key, bytes, size) in &cases {
            rig.storage()
                .put(&object_key(key), bytes, "application/octet-stream")
                .await
                .unwrap();
            let mut m = NewMedia::approved(key, "blob.bin");
            m.file_size = *size;
            ids.push(rig.insert_media(&m).await);
        }
        let (code, logs) = sync_once(&rig, &[("VALIDATE_MEDIA", "false"), ("ARCHIVE_SYNCFS", syncfs)]).await;
        assert_eq!(code, Some(0), "ARCHIVE_SYNCFS={syncfs}: {logs}");
        for ((key, bytes, _), id) in cases.iter().zip(&ids) {
            let (status, path) = row(&rig, *id).await;
            assert_eq!(status, "archived", "{key}, ARCHIVE_SYNCFS={syncfs}: {logs}");
            let file = rig.archive_dir().join(path.expect("archived rows have a path"));
            assert!(std::fs::read(&file).unwrap() == *bytes, "{key}: archived bytes differ");
            assert!(!in_bucket(&rig, key).await, "{key} is deleted from the bucket");
        }
    }
}
