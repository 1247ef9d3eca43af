//! Hostile `r2_key`s: every request names the row's literal object inside the configured
//! bucket, keys that name no object fail their row before any request, and no object a row
//! does not own is ever read or deleted. The real binary against real PostgreSQL, the test S3
//! server (which logs each request line as received) and ffprobe.

use crate::common;

use std::collections::BTreeSet;

use common::invariants::sha256_hex;
use common::{media, NewMedia, Rig, TestDb, BUCKET};

/// Literal object names that only look special: each must be archived from exactly itself.
const LITERAL: &[&str] = &[
    "%2e%2e/other/secret.wav",
    "uploads/%2E%2E/%2e/x.wav",
    "uploads/.../x.wav",
    "uploads/.hidden.wav",
    "uploads/a..b.wav",
    "uploads\\..\\..\\other\\secret.wav",
    "uploads/a?b#c.wav",
    "uploads/a+b c.wav",
    "uploads/100%25 done%.wav",
    "uploads/semi;colon=1&x=2.wav",
    "uploads/été/東京.wav",
    "uploads/\u{202e}vaw.exe.wav",
];

/// Keys that name no object r2-sync may address: their rows fail, nothing is requested.
const REFUSED: &[&str] = &[
    "",
    "/",
    "//",
    ".",
    "..",
    "../other/secret.wav",
    "uploads/./k/decoy.wav",
    "uploads/k/../k/decoy.wav",
    "uploads//k/decoy.wav",
    "/uploads/k/decoy.wav",
    "uploads/k/decoy.wav/",
    "uploads/k/decoy.wav/.",
    "uploads/k/decoy.wav/..",
    "./uploads/k/decoy.wav",
];

/// Owned by a row that is not approved: no pass may touch it.
const DECOY: &str = "uploads/k/decoy.wav";

/// Every request line is a bucket-level LIST or DeleteObjects of the configured bucket, or
/// an object request whose path decodes to exactly one of `owned`; each of `owned` was read.
fn assert_requests_name_only(requests: &[String], owned: &[&str]) {
    let owned: BTreeSet<&str> = owned.iter().copied().collect();
    let prefix = format!("/{BUCKET}/");
    let mut read = BTreeSet::new();
    for line in requests {
        let (method, target) = line.split_once(' ').unwrap_or_else(|| panic!("request line {line:?}"));
        let rest = target
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line:?} is outside bucket {BUCKET:?}"));
        if let Some(query) = rest.strip_prefix('?') {
            let bucket_level =
                (method == "POST" && query == "delete") || (method == "GET" && query.contains("list-type"));
            assert!(bucket_level, "{line:?} addresses the bucket itself");
            continue;
        }
        assert!(!rest.contains('?'), "{line:?}: an object request carries a query");
        let key = percent_encoding::percent_decode_str(rest).decode_utf8().unwrap();
        assert!(
            owned.contains(key.as_ref()),
            "{line:?} names {key:?}, which no claimed row owns"
        );
        assert!(["GET", "HEAD", "DELETE"].contains(&method), "{line:?}");
        if method != "DELETE" {
            read.insert(key.into_owned());
        }
    }
    for key in owned {
        assert!(read.contains(key), "{key:?} was never read: {requests:#?}");
    }
}

async fn status_and_reason(rig: &Rig, id: i64) -> (String, Option<String>) {
    let c = rig.db.client().await;
    let status: String = c
        .query_one("SELECT status FROM media WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let reason = c
        .query_opt(
            "SELECT details->>'reason' FROM audit_logs WHERE entity_id = $1 AND action = 'media.sync_failed'",
            &[&id],
        )
        .await
        .unwrap()
        .and_then(|r| r.get(0));
    (status, reason)
}

async fn sync_once(rig: &Rig, validate: &str) -> (Option<i32>, String) {
    let out = rig
        .command(&["sync", "--once"])
        .env("VALIDATE_MEDIA", validate)
        .env("BATCH_SIZE", "100")
        .output()
        .await
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), logs)
}

#[tokio::test]
async fn hostile_keys_reach_their_literal_object_or_fail_before_any_request() {
    for validate in ["true", "false"] {
        let rig = Rig::new().await;
        let tones = tempfile::tempdir().unwrap();
        rig.s3.plant(BUCKET, DECOY, b"another row's object");
        let mut pending = NewMedia::approved(DECOY, "decoy.wav");
        pending.status = "pending";
        let pending = rig.insert_media(&pending).await;

        let mut literal = Vec::new();
        for (i, key) in LITERAL.iter().enumerate() {
            let tone = media::tone(tones.path(), &format!("{i}.wav"), 300 + 40 * i as u32);
            let bytes = std::fs::read(tone).unwrap();
            rig.s3.plant(BUCKET, key, &bytes);
            let id = rig.insert_media(&NewMedia::approved(key, "clip.wav")).await;
            literal.push((id, *key, sha256_hex(&bytes)));
        }
        let long = "k".repeat(1025);
        let mut refused = Vec::new();
        for key in REFUSED.iter().copied().chain([long.as_str()]) {
            refused.push((
                rig.insert_media(&NewMedia::approved(key, "x.wav")).await,
                key.to_owned(),
            ));
        }

        let (code, logs) = sync_once(&rig, validate).await;
        assert_eq!(
            code,
            Some(1),
            "VALIDATE_MEDIA={validate}: refused rows are failures: {logs}"
        );

        rig.assert_bystanders_untouched(&logs);
        assert_eq!(
            rig.s3.object(BUCKET, DECOY).as_deref(),
            Some(&b"another row's object"[..]),
            "{logs}"
        );
        assert_requests_name_only(&rig.s3.requests().await, LITERAL);
        for (id, key, sha) in &literal {
            let (status, _) = status_and_reason(&rig, *id).await;
            assert_eq!(status, "archived", "{key:?} (VALIDATE_MEDIA={validate}): {logs}");
            assert_eq!(rig.s3.object(BUCKET, key), None, "{key:?} is deleted once archived");
            let c = rig.db.client().await;
            let path: String = c
                .query_one("SELECT archive_path FROM media WHERE id = $1", &[id])
                .await
                .unwrap()
                .get(0);
            let archived = std::fs::read(rig.archive_dir().join(&path)).unwrap();
            assert_eq!(
                &sha256_hex(&archived),
                sha,
                "{key:?}: the archive holds another object's bytes"
            );
        }
        for (id, key) in &refused {
            let (status, reason) = status_and_reason(&rig, *id).await;
            assert_eq!(status, "failed", "{key:?}: {logs}");
            let reason = reason.unwrap_or_default();
            assert!(
                reason.starts_with("r2_key "),
                "{key:?} fails with the key's reason: {reason:?}"
            );
        }
        assert_eq!(status_and_reason(&rig, pending).await.0, "pending");
    }
}

/// A backend whose database is `SQL_ASCII` may hold keys (and names) that are not UTF-8:
/// the row is still read, failed with that reason, and nothing is requested for it; the
/// other rows of the pass are archived as usual.
#[tokio::test]
async fn keys_that_are_null_or_not_utf8_fail_their_row_and_touch_nothing() {
    let rig = Rig::with_db(TestDb::create_sql_ascii().await);
    let tones = tempfile::tempdir().unwrap();
    let good = std::fs::read(media::tone(tones.path(), "good.wav", 440)).unwrap();
    rig.s3.plant(BUCKET, "uploads/good.wav", &good);
    let good_id = rig
        .insert_media(&NewMedia::approved("uploads/good.wav", "good.wav"))
        .await;
    let c = rig.db.client().await;
    c.batch_execute("ALTER TABLE media ALTER COLUMN r2_key DROP NOT NULL")
        .await
        .unwrap();
    let mut bad = Vec::new();
    for (key_sql, name_sql) in [
        ("NULL", "'x.wav'"),
        (r"E'uploads/not-owned\xff.wav'", r"E'caf\xe9.wav'"),
        (r"E'\xc0\xae\xc0\xae/other/secret.wav'", "'y.wav'"),
    ] {
        let sql = format!(
            "INSERT INTO media (user_id, r2_key, original_filename, status, approved_at) \
             VALUES (7, {key_sql}, {name_sql}, 'approved', now()) RETURNING id"
        );
        bad.push((c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0), key_sql));
    }

    let (code, logs) = sync_once(&rig, "true").await;
    assert_eq!(code, Some(1), "{logs}");
    rig.assert_bystanders_untouched(&logs);
    assert_requests_name_only(&rig.s3.requests().await, &["uploads/good.wav"]);
    assert_eq!(status_and_reason(&rig, good_id).await.0, "archived", "{logs}");
    for (id, key_sql) in bad {
        let (status, reason) = status_and_reason(&rig, id).await;
        assert_eq!(status, "failed", "{key_sql}: {logs}");
        let reason = reason.unwrap_or_default();
        let expected = if key_sql == "NULL" {
            "empty or NULL"
        } else {
            "not valid UTF-8"
        };
        assert!(reason.contains(expected), "{key_sql}: {reason:?}");
    }
}
