//! The PostgreSQL writes r2-sync owes, against the real server: archived records asked for
//! together share one transaction and still get their own outcome.

use crate::common;

use common::{NewMedia, Rig};
use r2_sync::db::Outcome;

#[tokio::test]
async fn archived_records_asked_together_each_get_their_own_outcome() {
    let rig = Rig::new().await;
    let c = rig.db.client().await;
    let fresh = rig.insert_media(&NewMedia::approved("a.mp4", "a.mp4")).await;
    let replayed = rig.insert_media(&NewMedia::approved("b.mp4", "b.mp4")).await;
    c.execute(
        "UPDATE media SET status = 'archived', archive_path = '2026/11/b.mp4' WHERE id = $1",
        &[&replayed],
    )
    .await
    .unwrap();
    let rejected = rig.insert_media(&NewMedia::approved("c.mp4", "c.mp4")).await;
    c.execute("UPDATE media SET status = 'rejected' WHERE id = $1", &[&rejected])
        .await
        .unwrap();
    let gone = 999_999;

    let db = rig.db_handle();
    let details = serde_json::json!({ "sha256": "abc" });
    let path = |id: i64| {
        if id == replayed {
            "2026/11/b.mp4".to_owned()
        } else {
            format!("2026/11/{id}.mp4")
        }
    };
    let calls = [fresh, replayed, rejected, gone].map(|id| {
        let (db, details, path) = (db.clone(), details.clone(), path(id));
        tokio::spawn(async move { db.record_archived(id, &path, &details).await.unwrap() })
    });
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    assert_eq!(outcomes[0], Outcome::Applied);
    assert_eq!(outcomes[1], Outcome::AlreadyApplied);
    assert_eq!(
        outcomes[2],
        Outcome::NotApproved {
            status: Some("rejected".into())
        }
    );
    assert_eq!(outcomes[3], Outcome::NotApproved { status: None });

    let row = c
        .query_one(
            "SELECT status, archive_path, storage_location FROM media WHERE id = $1",
            &[&fresh],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "archived");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(path(fresh).as_str()));
    assert_eq!(row.get::<_, String>(2), "unraid");
    let audits: Vec<(i64, serde_json::Value)> = c
        .query(
            "SELECT entity_id, details FROM audit_logs WHERE action = 'media.archived'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        audits,
        vec![(fresh, details.clone())],
        "one audit row, for the row that moved"
    );

    // Asked again (a replay after a crash), alone: recognised, nothing written twice.
    assert_eq!(
        db.record_archived(fresh, &path(fresh), &details).await.unwrap(),
        Outcome::AlreadyApplied
    );
    let count: i64 = c
        .query_one("SELECT count(*) FROM audit_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

/// The plan PostgreSQL makes for `sql` with `params`, as text.
async fn plan(c: &tokio_postgres::Client, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> String {
    let rows = c.query(&format!("EXPLAIN {sql}"), params).await.unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `CREATE INDEX` statement the README asks the backend's owner to run.
fn readme_index() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("CREATE INDEX CONCURRENTLY"))
        .expect("the README names the index");
    line.trim_end_matches(';').to_owned()
}

/// A million rows, a few hundred approved: the claim reads through the backend's status
/// index, never the whole table; the fallback lookup of a path does too once the index the
/// README asks for exists (and reads the whole table without it, which is why it asks).
#[tokio::test]
async fn at_a_million_rows_the_claim_and_the_path_lookup_read_through_indexes() {
    let rig = Rig::new().await;
    let c = rig.db.client().await;
    c.batch_execute(
        "INSERT INTO media (user_id, r2_key, original_filename, content_type, status, archive_path, archived_at, approved_at)
         SELECT g % 500, 'uploads/' || g, 'f' || g || '.mp4', 'video/mp4',
                CASE WHEN g % 3000 = 0 THEN 'approved' ELSE 'archived' END,
                CASE WHEN g % 3000 = 0 THEN NULL ELSE '2026/01/' || g || '-f' || g || '.mp4' END,
                now(), now() - make_interval(secs => g)
         FROM generate_series(1, 1000000) g;
         ANALYZE media;",
    )
    .await
    .unwrap();
    let db = rig.db_handle();
    db.ensure_lease_table().await.unwrap();
    let (approved, archived, owner, limit, lease) = ("approved", "archived", "plan-test", 10i64, 3600f64);

    let claim = plan(&c, &r2_sync::db::claim_sql(), &[&approved, &owner, &limit, &lease]).await;
    assert!(!claim.contains("Seq Scan on media"), "{claim}");
    assert!(claim.contains("idx_media_status"), "{claim}");

    let lookup = r2_sync::db::archived_at_path_sql();
    let path = "2026/01/4242-f4242.mp4";
    let before = plan(&c, &lookup, &[&path, &archived]).await;
    assert!(before.contains("Seq Scan on media"), "without the index: {before}");
    // CONCURRENTLY cannot run inside a transaction: one statement at a time.
    c.batch_execute(&readme_index()).await.unwrap();
    c.batch_execute("ANALYZE media").await.unwrap();
    let after = plan(&c, &lookup, &[&path, &archived]).await;
    assert!(
        after.contains("idx_media_archive_path"),
        "with the README's index: {after}"
    );
    assert!(!after.contains("Seq Scan on media"), "{after}");
}
