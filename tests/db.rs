//! The PostgreSQL writes r2-sync owes, against the real server: archived records asked for
//! together share one transaction and still get their own outcome.

mod common;

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
