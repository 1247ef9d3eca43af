//! The migration's evidence and its last step, against a "bash-era" archive: files placed by
//! the old service with its own layout and no sidecars, rows it marked archived, one corrupt
//! copy, one missing file. `shadow-report` sorts every media into its category; `adopt`
//! makes the old files ledger-known (served with PostgreSQL unreachable), writes their
//! sidecars, never replaces one, and lists the missing file.

use crate::common;
use crate::server_support;

use common::{media, NewMedia, Rig, BUCKET};
use serde_json::Value;

struct Media {
    id: i64,
    bytes: Vec<u8>,
}

/// An approved row whose object holds `bytes`.
async fn upload(rig: &Rig, key: &str, bytes: Vec<u8>) -> Media {
    rig.s3.plant(BUCKET, key, &bytes);
    let mut row = NewMedia::approved(key, "clip.wav");
    row.content_type = "audio/wav";
    Media {
        id: rig.insert_media(&row).await,
        bytes,
    }
}

/// What the old service did: its copy at `rel`, the row archived there.
async fn archived_by_bash(rig: &Rig, m: &Media, rel: &str, bytes: Option<&[u8]>) {
    if let Some(bytes) = bytes {
        let dest = rig.archive_dir().join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
    rig.db
        .client()
        .await
        .execute(
            "UPDATE media SET status = 'archived', archive_path = $2, storage_location = 'unraid', \
             archived_at = now() WHERE id = $1",
            &[&m.id, &rel],
        )
        .await
        .unwrap();
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_id(findings: &[Value], id: i64) -> &Value {
    findings
        .iter()
        .find(|f| f["media_id"] == id)
        .unwrap_or_else(|| panic!("no finding for {id}: {findings:#?}"))
}

#[tokio::test]
async fn shadow_report_sorts_every_media_and_adopt_makes_the_old_archive_ledger_known() {
    let rig = Rig::new().await;
    let tones = tempfile::tempdir().unwrap();
    let tone = |name: &str, hz| std::fs::read(media::tone(tones.path(), name, hz)).unwrap();
    let same = upload(&rig, "uploads/same.wav", tone("a.wav", 300)).await;
    let also_same = upload(&rig, "uploads/also.wav", tone("b.wav", 350)).await;
    let corrupted = upload(&rig, "uploads/corrupt.wav", tone("c.wav", 400)).await;
    let shadow_only = upload(&rig, "uploads/new.wav", tone("d.wav", 450)).await;
    let unplayable = upload(&rig, "uploads/bad.wav", b"not audio at all, just bytes".repeat(40)).await;
    let missing = Media {
        id: rig
            .insert_media(&NewMedia::approved("uploads/gone.wav", "gone.wav"))
            .await,
        bytes: Vec::new(),
    };

    // Shadow mode archives the approved rows into SHADOW_DIR (the unplayable one fails).
    let shadow = rig.dir.path().join("shadow");
    std::fs::create_dir_all(&shadow).unwrap();
    let shadow_env = shadow.to_str().unwrap().to_owned();
    let out = rig
        .command(&["sync", "--once"])
        .env("SHADOW_DIR", &shadow_env)
        .env("BATCH_SIZE", "20")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));

    // Meanwhile the bash service archived its own copies, its own way.
    archived_by_bash(&rig, &same, "bash/same.wav", Some(&same.bytes)).await;
    archived_by_bash(&rig, &also_same, "bash/also.wav", Some(&also_same.bytes)).await;
    let mut damaged = corrupted.bytes.clone();
    damaged[100] ^= 0xff;
    archived_by_bash(&rig, &corrupted, "bash/corrupt.wav", Some(&damaged)).await;
    archived_by_bash(&rig, &unplayable, "bash/bad.wav", Some(&unplayable.bytes)).await;
    archived_by_bash(&rig, &missing, "bash/gone.wav", None).await;

    let out = rig
        .command(&["shadow-report", "--json"])
        .env("SHADOW_DIR", &shadow_env)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a copy differs: exit 1");
    let findings = lines(&out.stdout);
    let summary = &findings.last().unwrap()["summary"];
    assert_eq!(
        *summary,
        serde_json::json!({ "identical": 2, "different": 1, "unreadable": 0, "only_in_shadow": 1, "only_in_old": 2 }),
        "{findings:#?}"
    );
    assert_eq!(by_id(&findings, same.id)["outcome"], "identical");
    assert_eq!(by_id(&findings, also_same.id)["outcome"], "identical");
    let different = by_id(&findings, corrupted.id);
    assert_eq!(different["outcome"], "different");
    assert_eq!(
        different["shadow_sha256"],
        common::invariants::sha256_hex(&corrupted.bytes)
    );
    assert_eq!(different["old_sha256"], common::invariants::sha256_hex(&damaged));
    assert_eq!(by_id(&findings, shadow_only.id)["outcome"], "only_in_shadow");
    let failed = by_id(&findings, unplayable.id);
    assert_eq!(failed["outcome"], "only_in_old");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .starts_with("shadowed: ffprobe rejected"),
        "the ledger's reason: {failed}"
    );
    assert!(by_id(&findings, missing.id)["reason"]
        .as_str()
        .unwrap()
        .contains("object is gone from the bucket"));
    let human = rig
        .command(&["shadow-report"])
        .env("SHADOW_DIR", &shadow_env)
        .output()
        .await
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("DIFFERENT") && human.contains("2 identical, 1 different"),
        "{human}"
    );

    // Cutover: the old archive is adopted. A sidecar already there is never replaced.
    let foreign = serde_json::json!({ "media_id": also_same.id, "sha256": "00" }).to_string();
    std::fs::write(rig.archive_dir().join("bash/also.wav.json"), &foreign).unwrap();
    let out = rig
        .command(&["adopt", "--json", "--max-rate", "50M"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a file is missing: exit 1");
    let adopted = lines(&out.stdout);
    let summary = &adopted.last().unwrap()["summary"];
    assert_eq!(summary["adopted"], 4, "{adopted:#?}");
    assert_eq!(summary["missing"], 1);
    assert_eq!(summary["sidecars_written"], 3);
    assert_eq!(summary["sidecars_differ"], 1);
    assert_eq!(by_id(&adopted, missing.id)["outcome"], "missing");
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(rig.archive_dir().join("bash/same.wav.json")).unwrap()).unwrap();
    assert_eq!(sidecar["sha256"], common::invariants::sha256_hex(&same.bytes));
    assert_eq!(sidecar["media_id"], same.id);
    assert_eq!(
        std::fs::read_to_string(rig.archive_dir().join("bash/also.wav.json")).unwrap(),
        foreign
    );
    // Resumable: a second run finds everything known and changes nothing.
    let again = rig.command(&["adopt", "--json"]).output().await.unwrap();
    let again = lines(&again.stdout);
    assert_eq!(again.last().unwrap()["summary"]["already_known"], 4, "{again:#?}");
    assert_eq!(again.last().unwrap()["summary"]["adopted"], 0);

    // While a running r2-sync holds the ledger, `adopt` asks it to do the work.
    let late = Media {
        id: rig
            .insert_media(&NewMedia::approved("uploads/late.wav", "late.wav"))
            .await,
        bytes: tone("e.wav", 500),
    };
    archived_by_bash(&rig, &late, "bash/late.wav", Some(&late.bytes)).await;
    let limits = r2_sync::server::Limits::default;
    let mut served = server_support::Served::with(rig, &[], limits()).await;
    let port = served.health.port().to_string();
    let out = served
        .rig
        .command(&["adopt", "--json"])
        .env("HEALTH_PORT", &port)
        .output()
        .await
        .unwrap();
    let remote = lines(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(remote.last().unwrap()["summary"]["adopted"], 1, "{remote:#?} {err}");
    assert_eq!(by_id(&remote, late.id)["outcome"], "adopted");
    assert_eq!(out.status.code(), Some(1), "still missing one");
    served.stop().await;
    // The rest of a partly moved struct lives to the end of the scope: let its ledger go now.
    let server_support::Served { rig, ledger, .. } = served;
    drop(ledger);

    // Served from the ledger with PostgreSQL unreachable.
    let served = server_support::Served::with(rig, &[("DB_PORT", "1")], limits()).await;
    for (m, rel) in [(&same, "bash/same.wav"), (&late, "bash/late.wav")] {
        let resp = reqwest::get(served.link(m.id as u64, rel)).await.unwrap();
        assert_eq!(resp.status(), 200, "{rel}");
        assert!(resp.bytes().await.unwrap() == m.bytes, "{rel}");
    }
}
