//! PostgreSQL going away mid-pass: transfers go on, the writes they owe wait in the ledger
//! and are applied when it is back.

use crate::common;

use std::time::Duration;

use common::{object_key, proxy::Proxy, NewMedia, Rig};
use r2_sync::state::Stage;

#[tokio::test]
async fn owed_record_waits_in_the_ledger_until_postgres_returns() {
    let rig = Rig::new().await;
    let mut data = vec![0u8; 120 << 20];
    rand::fill(&mut data[..]);
    rig.storage()
        .put(&object_key("uploads/o.bin"), &data, "application/octet-stream")
        .await
        .unwrap();
    let id = rig.insert_media(&NewMedia::approved("uploads/o.bin", "o.bin")).await;

    let pg = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let port = pg.addr.port().to_string();
    let syncer = rig.syncer(&[("DB_PORT", &port), ("VALIDATE_MEDIA", "false")]);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pass = {
        let (syncer, shutdown) = (syncer.clone(), shutdown.clone());
        tokio::spawn(async move { syncer.pass(&shutdown).await })
    };
    rig.wait_for_part(id, 1).await;
    pg.down();
    let report = tokio::time::timeout(Duration::from_secs(120), pass)
        .await
        .expect("the pass ends while PostgreSQL is away")
        .unwrap();
    assert_eq!(report.owed, 1, "{report:?}");

    let entry = syncer.ctx.ledger.get(id as u64).unwrap().unwrap();
    assert_eq!(entry.stage(), Stage::Archived, "the record is owed");
    let archived = rig.archive_dir().join(entry.archive_path.as_ref().unwrap());
    assert_eq!(std::fs::read(&archived).unwrap(), data, "the file is safe on disk");
    assert!(
        rig.storage().head(&object_key("uploads/o.bin")).await.is_ok(),
        "nothing deleted before the record"
    );
    let c = rig.db.client().await;
    let status = rig.status(id).await;
    assert_eq!(status, "approved");

    // Still away: settling changes nothing and returns quickly (no busy loop, no hang).
    let started = std::time::Instant::now();
    let attempts_before = pg.accepted();
    assert_eq!(syncer.settle_owed().await, 0);
    let attempts = pg.accepted() - attempts_before;
    assert!(
        attempts <= 3,
        "bounded reconnects, no busy loop: {attempts} connection attempts"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        syncer.ctx.ledger.get(id as u64).unwrap().unwrap().stage(),
        Stage::Archived
    );

    pg.up();
    assert_eq!(syncer.settle_owed().await, 1);
    let row = c
        .query_one("SELECT status, archive_path FROM media WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "archived");
    assert_eq!(row.get::<_, Option<String>>(1), entry.archive_path);
    let audits: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE entity_id = $1 AND action = 'media.archived'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audits, 1);
    assert!(
        rig.storage().head(&object_key("uploads/o.bin")).await.is_err(),
        "deleted once recorded"
    );
    assert_eq!(syncer.ctx.ledger.get(id as u64).unwrap().unwrap().stage(), Stage::Done);
}

/// SIGTERM while a PostgreSQL request hangs (the server accepts and never answers): the
/// process waits SHUTDOWN_GRACE for it, no longer, exits cleanly, and the next start, with
/// PostgreSQL back, finishes the file with nothing lost. The bound docs/reliability.md states.
#[tokio::test]
async fn sigterm_while_a_database_request_hangs_exits_within_the_grace() {
    let rig = Rig::new().await;
    let mut data = vec![0u8; 8 << 20];
    rand::fill(&mut data[..]);
    rig.storage()
        .put(&object_key("uploads/h.bin"), &data, "application/octet-stream")
        .await
        .unwrap();
    let id = rig.insert_media(&NewMedia::approved("uploads/h.bin", "h.bin")).await;
    let s3 = Proxy::start(rig.s3.endpoint.trim_start_matches("http://").parse().unwrap()).await;
    let pg = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    s3.rate(1 << 20);
    let child = rig
        .command(&["sync", "--once"])
        .env("DB_PORT", pg.addr.port().to_string())
        .env("R2_ENDPOINT", format!("http://{}", s3.addr))
        .env("VALIDATE_MEDIA", "false")
        .env("SHUTDOWN_GRACE", "3s")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    rig.wait_for_part(id, 1).await;
    // Every answer from PostgreSQL held back from now on; the transfer then finishes and
    // the pass waits on the database (the row check before placing, or the record).
    pg.stall(true);
    s3.rate(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (out, took) = common::sigterm(child).await;
    let logs = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a pass cut short is not a success: {logs}");
    assert!(
        took >= Duration::from_secs(2),
        "it waited for the hanging request: {took:?}"
    );
    assert!(
        took < Duration::from_secs(7),
        "SHUTDOWN_GRACE (3 s) bounds the stop: {took:?}\n{logs}"
    );
    assert!(logs.contains("shutdown grace period over"), "{logs}");
    assert!(
        rig.storage().head(&object_key("uploads/h.bin")).await.is_ok(),
        "nothing deleted without its record"
    );
    assert_eq!(rig.status(id).await, "approved");

    pg.stall(false);
    let out = rig
        .command(&["sync", "--once"])
        .env("VALIDATE_MEDIA", "false")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let seeded = common::invariants::Seeded {
        id,
        key: "uploads/h.bin".into(),
        sha256: common::invariants::sha256_hex(&data),
        size: data.len() as u64,
    };
    common::invariants::check_rig(&rig, &[seeded]).await;
}
