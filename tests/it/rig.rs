//! Smoke tests proving each real part of the rig works through the project's own modules.
//! They fail, never skip, when PostgreSQL, the S3 server or ffprobe is missing or broken.

use crate::common;

use std::time::Duration;

use common::{media, object_key, NewMedia, Rig};
use md5::{Digest, Md5};
use r2_sync::probe;
use r2_sync::storage::StorageError;

#[tokio::test]
async fn s3_server_speaks_what_r2_speaks() {
    let rig = Rig::new().await;
    let video = media::video(rig.dir.path(), "clip.mp4", 2);
    let bytes = std::fs::read(&video).unwrap();
    let storage = rig.storage();
    storage.ping().await.expect("signed LIST works");
    storage
        .put(&object_key("uploads/1/clip.mp4"), &bytes, "video/mp4")
        .await
        .unwrap();

    let info = storage.head(&object_key("uploads/1/clip.mp4")).await.unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(
        info.etag,
        hex::encode(Md5::digest(&bytes)),
        "single-part ETag is the MD5"
    );
    assert_eq!(info.content_type.as_deref(), Some("video/mp4"));

    let mut tail = Vec::new();
    storage
        .download(&object_key("uploads/1/clip.mp4"), &info.etag, 100, None, &mut tail)
        .await
        .unwrap();
    assert_eq!(tail, bytes[100..], "ranged GET from byte 100");
    let sent = rig.s3.bytes_sent().await;
    assert_eq!(sent, bytes.len() as u64 - 100, "the server counts only what it sent");

    let mut sink = Vec::new();
    let err = storage
        .download(
            &object_key("uploads/1/clip.mp4"),
            "0123456789abcdef0123456789abcdef",
            0,
            None,
            &mut sink,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Changed { .. }), "If-Match mismatch: {err}");
    assert!(sink.is_empty());

    storage.delete(&object_key("uploads/1/clip.mp4")).await.unwrap();
    assert!(matches!(
        storage.head(&object_key("uploads/1/clip.mp4")).await.unwrap_err(),
        StorageError::NotFound { .. }
    ));
    storage
        .delete(&object_key("uploads/1/clip.mp4"))
        .await
        .expect("deleting a missing object succeeds");
}

#[tokio::test]
async fn s3_server_refuses_wrong_credentials() {
    let rig = Rig::new().await;
    let mut vars = rig.env();
    vars.insert("R2_SECRET_KEY".into(), "wrong-secret".into());
    let cfg = r2_sync::config::Config::from_vars(&vars).unwrap();
    let storage = r2_sync::storage::Storage::new(&cfg.r2).unwrap();
    let err = storage.ping().await.unwrap_err();
    assert!(matches!(err, StorageError::Refused { status: 403, .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));
}

#[tokio::test]
async fn postgres_rows_round_trip_through_the_db_module() {
    let rig = Rig::new().await;
    let id = rig
        .insert_media(&NewMedia::approved("uploads/2/a.mp4", "../../etc/passwd"))
        .await;
    let db = rig.db_handle();
    db.ping().await.unwrap();
    let row = db.row(id).await.unwrap().expect("row exists");
    assert_eq!(row.r2_key, "uploads/2/a.mp4");
    assert_eq!(row.original_filename, "../../etc/passwd");
    assert!(row.is_claimable());
    assert!(db.row(id + 1000).await.unwrap().is_none());
}

#[tokio::test]
async fn ffprobe_accepts_real_media_and_rejects_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let ffprobe = std::path::Path::new("ffprobe");
    let timeout = Duration::from_secs(30);
    for name in ["clip.mp4", "clip.mkv"] {
        let file = media::video(dir.path(), name, 2);
        let summary = probe::probe(ffprobe, &file, timeout)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(summary.duration_secs.unwrap() > 1.5, "{name}: {summary:?}");
        assert!(summary
            .streams
            .iter()
            .any(|s| s.kind == "video" && s.width == Some(160)));
        assert!(summary.streams.iter().any(|s| s.kind == "audio"));
    }
    for file in [
        media::corrupt(dir.path(), "noise.mp4", 50_000),
        media::truncated(dir.path(), "half.mp4"),
    ] {
        let err = probe::probe(ffprobe, &file, timeout).await.unwrap_err();
        assert!(err.is_permanent(), "{}: {err}", file.display());
    }
    let missing = probe::probe(
        std::path::Path::new("/nonexistent/ffprobe"),
        &dir.path().join("clip.mp4"),
        timeout,
    )
    .await
    .unwrap_err();
    assert!(!missing.is_permanent(), "a missing ffprobe is not the file's fault");
}

/// Keys with `+` and `%` list as what was stored, and an empty object leaves the connection
/// usable: the tests trust this server's answers.
#[tokio::test]
async fn s3_server_lists_keys_as_stored_and_survives_an_empty_upload() {
    let rig = Rig::new().await;
    let storage = rig.storage();
    let keys = ["odd/a+b.mp4", "odd/100%25.mp4", "odd/100%.mp4", "odd/sp ace.mp4"];
    for key in keys {
        storage.put(&object_key(key), b"bytes", "video/mp4").await.unwrap();
    }
    let cfg = rig.config().r2;
    let bucket = s3::Bucket::new(
        &cfg.bucket,
        s3::Region::Custom {
            region: cfg.region.clone(),
            endpoint: cfg.endpoint.clone(),
        },
        s3::creds::Credentials::new(Some(&cfg.access_key), Some(cfg.secret_key.expose()), None, None, None).unwrap(),
    )
    .unwrap()
    .with_path_style();
    let mut listed: Vec<String> = bucket
        .list("odd/".to_owned(), None)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|page| page.contents)
        .map(|o| o.key)
        .collect();
    listed.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Asked for URL-encoded keys (as boto3 and the AWS CLI ask), each is encoded, so that a
    // client decoding them (`+` as a space, `%25` as `%`) gets the stored key back.
    let queries = [("list-type", "2"), ("prefix", "odd/"), ("encoding-type", "url")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let url = bucket.presign_get("/", 60, Some(queries)).await.unwrap();
    let xml = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let mut encoded: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Key"))
        .filter_map(|n| n.text())
        // As botocore decodes them (unquote_plus).
        .map(|k| {
            url::form_urlencoded::parse(format!("k={k}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        })
        .collect();
    encoded.sort();
    assert_eq!(encoded, expected, "{xml}");
    // An empty object, then more requests on the same client: each answered, none hangs.
    let empty = object_key("odd/empty.bin");
    tokio::time::timeout(Duration::from_secs(10), async {
        storage.put(&empty, b"", "application/octet-stream").await.unwrap();
        assert_eq!(storage.head(&empty).await.unwrap().size, 0);
        storage.ping().await.unwrap();
    })
    .await
    .expect("a request after an empty upload hung");
}
