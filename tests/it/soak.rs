//! Soak: many files over many passes with crashes and network cuts injected at random; at the
//! end the invariants hold. `R2SYNC_SOAK_FILES` scales it (default 40, small enough for CI).
#![cfg(feature = "fault-injection")]

use crate::common;

use std::time::Duration;

use common::invariants::{self, sha256_hex, Seeded};
use common::proxy::Proxy;
use common::{media, object_key, NewMedia, Rig};
use rand::seq::IndexedRandom;

async fn seed(rig: &Rig, count: usize) -> Vec<Seeded> {
    let src = tempfile::tempdir().unwrap();
    let small = std::fs::read(media::video(src.path(), "small.mp4", 1)).unwrap();
    let big = std::fs::read(media::video_sized(src.path(), "big.mp4", 2, "320x240", 60)).unwrap();
    let mut seeded = Vec::new();
    for i in 0..count {
        let bytes = match i % 10 {
            0 => big.clone(),
            7 => std::fs::read(media::corrupt(src.path(), "noise.mp4", 40_000)).unwrap(),
            _ => small.clone(),
        };
        let key = format!("uploads/soak/{i}.mp4");
        rig.storage().put(&object_key(&key), &bytes, "video/mp4").await.unwrap();
        let id = rig
            .insert_media(&NewMedia::approved(&key, &format!("clip {i}.mp4")))
            .await;
        seeded.push(Seeded {
            id,
            key,
            sha256: sha256_hex(&bytes),
            size: bytes.len() as u64,
        });
    }
    seeded
}

async fn approved_left(rig: &Rig) -> i64 {
    let c = rig.db.client().await;
    c.query_one("SELECT count(*) FROM media WHERE status = 'approved'", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn many_passes_with_random_crashes_and_cuts_lose_nothing() {
    let files = std::env::var("R2SYNC_SOAK_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let rig = Rig::new().await;
    let proxy = Proxy::start(rig.s3.endpoint.trim_start_matches("http://").parse().unwrap()).await;
    let seeded = seed(&rig, files).await;
    let biggest = seeded.iter().map(|s| s.size).max().unwrap();
    let mut crashes = 0;
    for round in 0..(files * 4).max(60) {
        if round > 0 && approved_left(&rig).await == 0 {
            break;
        }
        let roll: f64 = rand::random();
        // The first pass always crashes (every row is claimable then): with few passes, the
        // dice alone left a whole soak without a crash about one run in ten.
        let fault = if round == 0 {
            Some("after_claim".to_string())
        } else if roll < 0.35 {
            None
        } else if roll < 0.75 {
            Some(r2_sync::fault::POINTS.choose(&mut rand::rng()).unwrap().to_string())
        } else {
            Some(format!("download@{}", rand::random_range(1..biggest)))
        };
        proxy.cut_after(if rand::random_bool(0.3) {
            rand::random_range(64_000..2_000_000)
        } else {
            0
        });
        let mut cmd = rig.command(&["sync", "--once"]);
        cmd.env("R2_ENDPOINT", format!("http://{}", proxy.addr))
            .env("BATCH_SIZE", "15")
            .env("SYNC_CONCURRENCY", "3")
            .env("LOG_LEVEL", "warn");
        if let Some(fault) = &fault {
            cmd.env("R2SYNC_FAULT", fault);
        }
        let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .expect("a pass ends")
            .unwrap();
        if out.status.code().is_none() {
            crashes += 1;
        }
    }
    // A last clean run settles whatever the final crash left owed.
    proxy.cut_after(0);
    let out = rig.command(&["sync", "--once"]).output().await.unwrap();
    assert!(out.status.code().is_some(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(approved_left(&rig).await, 0, "every file reached an outcome");
    assert!(crashes > 0, "the soak injected no crash at all");
    invariants::check_rig(&rig, &seeded).await;
}
