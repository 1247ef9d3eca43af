//! The promise, checked after every scenario: a file leaves R2 only when it is safe on disk
//! and recorded; nothing is archived twice; nothing partial is left behind; objects no row
//! owns are never touched.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{object_key, Rig};

/// What a test uploaded for one media row.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub id: i64,
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every file under `archive`, relative to it.
pub fn archive_files(archive: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(archive, &mut all);
    all.into_iter()
        .map(|p| p.strip_prefix(archive).unwrap().to_path_buf())
        .collect()
}

pub async fn audits(rig: &Rig, id: i64, action: &str) -> i64 {
    let c = rig.db.client().await;
    c.query_one(
        "SELECT count(*) FROM audit_logs WHERE entity_id = $1 AND action = $2",
        &[&id, &action],
    )
    .await
    .unwrap()
    .get(0)
}

/// [`check`] over the rig's own archive and ledger.
pub async fn check_rig(rig: &Rig, seeded: &[Seeded]) {
    let ledger = rig.state_dir().join(r2_sync::context::LEDGER_FILE);
    check(rig, &rig.archive_dir(), seeded, Some(&ledger)).await;
}

/// Panics, saying which promise broke, unless every invariant holds. `ledger` is checked
/// when given (the process that owned it must have exited).
pub async fn check(rig: &Rig, archive: &Path, seeded: &[Seeded], ledger: Option<&Path>) {
    rig.assert_bystanders_untouched("objects not owned by any row are never touched");
    let files = archive_files(archive);
    let leftovers: Vec<_> = files
        .iter()
        .filter(|p| p.starts_with(".r2-sync-tmp") || p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp or partial files left in the archive: {leftovers:?}"
    );
    let ledger = ledger.map(|p| r2_sync::state::Ledger::open(p).expect("ledger opens after the run"));
    let client = rig.db.client().await;
    for s in seeded {
        let row = client
            .query_one("SELECT status, archive_path FROM media WHERE id = $1", &[&s.id])
            .await
            .unwrap();
        let (status, path): (String, Option<String>) = (row.get(0), row.get(1));
        let prefix = format!("{}-", s.id);
        let mine: Vec<_> = files
            .iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
            .filter(|p| !p.to_string_lossy().ends_with(".json"))
            .collect();
        let in_bucket = rig.storage().head(&object_key(&s.key)).await.is_ok();
        let stage = ledger
            .as_ref()
            .and_then(|l| l.get(s.id as u64).unwrap())
            .map(|e| e.stage());
        let ctx = format!(
            "media {} ({status}, ledger {stage:?}, files {mine:?}, in bucket {in_bucket})",
            s.id
        );
        assert!(
            ["archived", "failed", "approved"].contains(&status.as_str()),
            "{ctx}: unexpected status"
        );
        if !in_bucket {
            assert_eq!(status, "archived", "{ctx}: object gone but the row is not archived");
        }
        match status.as_str() {
            "archived" => {
                assert_eq!(mine.len(), 1, "{ctx}: exactly one archived file");
                let path = path.unwrap_or_else(|| panic!("{ctx}: archive_path unset"));
                assert_eq!(
                    Path::new(&path),
                    mine[0].as_path(),
                    "{ctx}: archive_path points elsewhere"
                );
                let bytes = std::fs::read(archive.join(&path)).unwrap();
                assert_eq!(
                    sha256_hex(&bytes),
                    s.sha256,
                    "{ctx}: archived bytes differ from the upload"
                );
                let sidecar: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(archive.join(format!("{path}.json"))).unwrap())
                        .unwrap_or_else(|e| panic!("{ctx}: sidecar is not JSON: {e}"));
                assert_eq!(sidecar["media_id"], s.id, "{ctx}");
                assert_eq!(sidecar["sha256"], s.sha256.as_str(), "{ctx}");
                assert_eq!(
                    audits(rig, s.id, "media.archived").await,
                    1,
                    "{ctx}: one media.archived audit row"
                );
                assert!(!in_bucket, "{ctx}: archived but still in the bucket");
                if ledger.is_some() {
                    assert_eq!(stage, Some(r2_sync::state::Stage::Done), "{ctx}: ledger disagrees");
                }
            }
            "failed" => {
                assert!(in_bucket, "{ctx}: a failed file must stay in R2");
                assert!(mine.is_empty(), "{ctx}: a failed file is not archived");
                assert_eq!(
                    audits(rig, s.id, "media.sync_failed").await,
                    1,
                    "{ctx}: one media.sync_failed row"
                );
                if ledger.is_some() {
                    assert_eq!(stage, Some(r2_sync::state::Stage::Failed), "{ctx}: ledger disagrees");
                }
            }
            _ => assert!(in_bucket, "{ctx}: still approved, so still in R2"),
        }
    }
}
