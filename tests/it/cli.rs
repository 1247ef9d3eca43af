//! The real binary: bad configuration, `check` against live and dead dependencies.

use crate::common;

use common::Rig;

#[tokio::test]
async fn malformed_or_missing_settings_exit_2_with_one_line_naming_the_variable() {
    let rig = Rig::new().await;
    for (var, value, expected) in [
        ("DB_PORT", Some("not-a-port"), "DB_PORT"),
        ("SYNC_INTERVAL", Some("whenever"), "SYNC_INTERVAL"),
        ("R2_BUCKET", None, "R2_BUCKET"),
        ("UNRAID_TUNNEL_SECRET", Some("too-short"), "UNRAID_TUNNEL_SECRET"),
        (
            "UNRAID_TUNNEL_SECRET",
            Some("CHANGE_ME_too-short-to-matter-but-43-bytes-long"),
            "UNRAID_TUNNEL_SECRET",
        ),
        ("R2_SECRET_KEY", Some("CHANGE_ME_too-short"), "R2_SECRET_KEY"),
        ("SYNC_CRON", Some("bad"), "SYNC_CRON"),
    ] {
        let mut cmd = rig.command(&["check"]);
        match value {
            Some(v) => cmd.env(var, v),
            None => cmd.env_remove(var),
        };
        let out = cmd.output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !stderr.contains(common::SECRET_KEY) && !stderr.contains("too-short"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn check_reports_each_dependency_and_passes_on_the_rig() {
    let rig = Rig::new().await;
    let out = rig.command(&["check"]).output().await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["config", "postgres", "bucket", "ffprobe", "archive", "state"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(&format!("{name}:"))),
            "{name} missing in\n{stdout}"
        );
    }
    assert!(!stdout.contains(common::SECRET_KEY) && !stdout.contains(common::TUNNEL_SECRET));
}

#[tokio::test]
async fn check_fails_and_says_which_part_is_down() {
    let rig = Rig::new().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = rig
        .command(&["check"])
        .env("R2_ENDPOINT", format!("http://{dead}"))
        .env("ARCHIVE_DIR", rig.dir.path().join("unmapped-share/archive"))
        .env("FFPROBE_PATH", "/nonexistent/ffprobe")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for name in ["bucket", "archive", "ffprobe"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains(&format!("{name}:"))),
            "{name}:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("ok") && l.contains("postgres:")),
        "{stdout}"
    );
}

/// A wrong FFPROBE_DEMUX_PATH fails `check` on the ffprobe line, naming the setting, the
/// program tried and what to do, while FFPROBE_PATH itself is fine.
#[tokio::test]
async fn check_names_a_wrong_ffprobe_demux_path() {
    let rig = Rig::new().await;
    let out = rig
        .command(&["check"])
        .env("FFPROBE_DEMUX_PATH", "/nonexistent/ffprobe-demux")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("ffprobe:"))
        .unwrap_or_else(|| panic!("no ffprobe line:\n{stdout}"));
    assert!(line.starts_with("FAIL"), "{line}");
    for needle in ["FFPROBE_DEMUX_PATH", "/nonexistent/ffprobe-demux", "leave it empty"] {
        assert!(line.contains(needle), "{needle} not in {line}");
    }
}

#[tokio::test]
async fn status_on_an_empty_ledger() {
    let rig = Rig::new().await;
    let out = rig.command(&["status", "--json"]).output().await.unwrap();
    assert!(out.status.success());
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["entries"], 0, "{parsed}");
    assert_eq!(parsed["stages"], serde_json::json!({}));
    assert_eq!(parsed["in_flight"], serde_json::json!([]));
}

#[tokio::test]
async fn db_sslmode_selects_encryption() {
    let rig = Rig::new().await;
    for (mode, expected) in [("disable", "(no TLS)"), ("prefer", "(TLS)"), ("require", "(TLS)")] {
        let out = rig.command(&["check"]).env("DB_SSLMODE", mode).output().await.unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let line = stdout.lines().find(|l| l.contains("postgres:")).unwrap().to_owned();
        assert!(line.starts_with("ok") && line.contains(expected), "{mode}: {line}");
    }
    // The local server's certificate is self-signed: verify-full must refuse it.
    let out = rig
        .command(&["check"])
        .env("DB_SSLMODE", "verify-full")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().any(|l| l.starts_with("FAIL postgres:")), "{stdout}");
}

#[tokio::test]
async fn a_missing_archive_directory_is_created_inside_an_existing_share() {
    let rig = Rig::new().await;
    let archive = rig.dir.path().join("fresh-install-archive");
    let out = rig
        .command(&["check"])
        .env("ARCHIVE_DIR", &archive)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(archive.is_dir(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("archive: created")),
        "{stdout}"
    );
    // A dry run changes nothing, not even this.
    let dry = rig.dir.path().join("dry-run-archive");
    let out = rig
        .command(&["check"])
        .env("ARCHIVE_DIR", &dry)
        .env("DRY_RUN", "true")
        .output()
        .await
        .unwrap();
    assert!(!dry.exists(), "{}", String::from_utf8_lossy(&out.stdout));
    // A pass on a fresh install creates it too.
    let pass = rig.dir.path().join("first-pass-archive");
    let out = rig
        .command(&["sync", "--once"])
        .env("ARCHIVE_DIR", &pass)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(pass.is_dir());
}

#[tokio::test]
async fn a_wrong_bucket_is_named_no_such_bucket_and_fails_no_media() {
    let rig = Rig::new().await;
    // One object small enough to be fetched by a GET, one big enough to be looked at by HEAD.
    let small = common::media::video(rig.dir.path(), "small.mp4", 1);
    let mut ids = Vec::new();
    for (key, size) in [("uploads/1/small.mp4", None), ("uploads/2/big.mp4", Some(8 << 20))] {
        let bytes = std::fs::read(&small).unwrap();
        rig.storage()
            .put(&common::object_key(key), &bytes, "video/mp4")
            .await
            .unwrap();
        let mut row = common::NewMedia::approved(key, "clip.mp4");
        row.file_size = size;
        ids.push(rig.insert_media(&row).await);
    }
    let out = rig
        .command(&["check"])
        .env("R2_BUCKET", "no-such-bucket")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().find(|l| l.contains("bucket:")).unwrap_or_default();
    assert!(
        line.starts_with("FAIL") && line.contains("NoSuchBucket") && line.contains("\"no-such-bucket\""),
        "{stdout}"
    );
    let out = rig
        .command(&["sync", "--once"])
        .env("R2_BUCKET", "no-such-bucket")
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("NoSuchBucket"), "{log}");
    for id in ids {
        assert_eq!(
            rig.status(id).await,
            "approved",
            "a wrong setting decides no media's fate:\n{log}"
        );
        assert_eq!(common::invariants::audits(&rig, id, "media.sync_failed").await, 0);
    }
}

/// `status` at a glance: a summary of counts, what is in flight, what is owed and the latest
/// failures; filters list entries (newest media first), as JSON lines with `--json`.
#[tokio::test]
async fn status_summarises_and_filters_the_ledger() {
    use r2_sync::state::{Entry, Ledger, Stage};
    let rig = Rig::new().await;
    {
        let ledger = Ledger::open(&rig.state_dir().join(r2_sync::context::LEDGER_FILE)).unwrap();
        let at = |id: u64, stage: Stage, error: Option<&str>| {
            let mut e = Entry::new(id, format!("uploads/{id}.mp4"));
            e.archive_path = Some(format!("2026/12/{id}-clip.mp4"));
            e.size = Some(1 << 20);
            e.error = error.map(str::to_owned);
            common::ledger::store_at(&ledger, &mut e, stage);
        };
        for id in 1..=3 {
            at(id, Stage::Done, None);
        }
        at(4, Stage::Failed, Some("ffprobe rejected the file: moov atom not found"));
        at(5, Stage::Failed, Some("object is gone from the bucket"));
        at(6, Stage::Downloading, None);
        at(7, Stage::Archived, None);
    }
    let status = |args: &[&str]| {
        let mut all = vec!["status"];
        all.extend_from_slice(args);
        let mut cmd = rig.command(&all);
        async move {
            let out = cmd.output().await.unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let human = status(&[]).await;
    assert!(
        human.starts_with("7 entries: archived=1 done=3 downloading=1 failed=2\n"),
        "{human}"
    );
    assert!(human.contains("in flight: 1\n"), "{human}");
    assert!(human.contains("owed: 1 record(s)"), "{human}");
    assert!(human.contains("moov atom not found"), "{human}");

    let summary: serde_json::Value = serde_json::from_str(&status(&["--json"]).await).unwrap();
    assert_eq!(summary["entries"], 7);
    assert_eq!(summary["owed"]["records"], 1);
    assert_eq!(summary["in_flight"][0]["media_id"], 6);
    assert_eq!(summary["recent_failures"][0]["media_id"], 5, "newest first");

    let lines =
        |out: String| -> Vec<serde_json::Value> { out.lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let failed = lines(status(&["--failed", "--json"]).await);
    let ids: Vec<u64> = failed.iter().map(|e| e["media_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![5, 4]);
    assert_eq!(failed[1]["error"], "ffprobe rejected the file: moov atom not found");
    assert_eq!(lines(status(&["--stage", "done", "--json"]).await).len(), 3);
    assert_eq!(
        lines(status(&["--stage", "done", "--limit", "1", "--json"]).await).len(),
        1
    );
    assert_eq!(lines(status(&["--since", "1h", "--json"]).await).len(), 7);
    assert!(status(&["--since", "2099-01-01", "--json"]).await.is_empty());
    let one = lines(status(&["--media-id", "7", "--json"]).await);
    assert_eq!((one.len(), one[0]["stage"].as_str()), (1, Some("archived")));
    let listed = status(&["--stage", "failed"]).await;
    assert_eq!(listed.lines().count(), 2, "{listed}");

    let bad = rig.command(&["status", "--stage", "sideways"]).output().await.unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad filter is a usage error");
}
