//! The dashboard on the health port: its JSON during a real pass of the real binary (a
//! transfer slowed by the fault proxy, a corrupt file with a hostile name), its buttons and
//! the rule they follow (CSRF token, `ADMIN_TOKEN`), and `/` on the file port still 401.

use crate::common;
use crate::server_binary::{spawn, Server};

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{media, object_key, NewMedia, Rig};
use serde_json::Value;

/// A name a stranger could give an upload: markup and script, which the page must show as text.
pub const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>.mp4";

/// A pass of the real binary in progress: a video of a few MB trickling through the proxy,
/// and a corrupt file with a hostile name that ffprobe rejects.
pub struct Pass {
    pub rig: Rig,
    pub server: Server,
    pub s3: Proxy,
    pub big: i64,
    pub big_size: u64,
    pub broken: i64,
}

impl Pass {
    pub async fn start(rate: u64, env: &[(&str, &str)]) -> Self {
        Self::start_after(None, rate, env).await
    }

    /// [`Self::start`], after a first `sync --once` that crashed at `fault` (`R2SYNC_FAULT`).
    pub async fn start_after(fault: Option<&str>, rate: u64, env: &[(&str, &str)]) -> Self {
        let rig = Rig::new().await;
        let src = tempfile::tempdir().unwrap();
        let video = std::fs::read(media::video_sized(src.path(), "big.mp4", 3, "320x240", 60)).unwrap();
        let junk = std::fs::read(media::corrupt(src.path(), "broken.mp4", 100_000)).unwrap();
        let storage = rig.storage();
        storage
            .put(&object_key("uploads/big.mp4"), &video, "video/mp4")
            .await
            .unwrap();
        storage
            .put(&object_key("uploads/broken.mp4"), &junk, "video/mp4")
            .await
            .unwrap();
        let big = rig
            .insert_media(&NewMedia::approved("uploads/big.mp4", "big.mp4"))
            .await;
        let broken = rig
            .insert_media(&NewMedia::approved("uploads/broken.mp4", HOSTILE))
            .await;
        if let Some(fault) = fault {
            let out = rig
                .command(&["sync", "--once"])
                .env("R2SYNC_FAULT", fault)
                .output()
                .await
                .unwrap();
            assert!(!out.status.success(), "the first run crashed at {fault}");
        }
        let s3 = Proxy::start(rig.s3.endpoint.trim_start_matches("http://").parse().unwrap()).await;
        s3.rate(rate);
        let mut cmd = rig.command(&["run"]);
        cmd.env("R2_ENDPOINT", format!("http://{}", s3.addr))
            .env("SYNC_INTERVAL", "1h");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let server = spawn(cmd).await;
        Self {
            rig,
            server,
            s3,
            big,
            big_size: video.len() as u64,
            broken,
        }
    }

    pub fn health_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.health)
    }

    pub async fn dashboard(&self) -> Value {
        let resp = reqwest::get(self.health_url("/api/dashboard")).await.unwrap();
        assert_eq!(resp.status(), 200);
        json(resp).await
    }

    /// Polls `/api/dashboard` until `ready` holds (30 s at most); the document that held.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let began = Instant::now();
        loop {
            let doc = self.dashboard().await;
            if ready(&doc) {
                return doc;
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "{what} never seen; last: {doc:#}\n{:?}",
                self.server.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn logged(&self, msg: &str) -> usize {
        let lines = self.server.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(&format!("\"msg\":\"{msg}\"")))
            .count()
    }
}

pub fn transfer(doc: &Value, id: i64) -> Option<&Value> {
    doc["now"]["transfers"].as_array()?.iter().find(|t| t["media_id"] == id)
}

pub fn failure(doc: &Value, id: i64) -> Option<&Value> {
    doc["history"]["failures"]
        .as_array()?
        .iter()
        .find(|f| f["media_id"] == id && f["stage"] == "failed")
}

async fn post(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

/// A body as JSON (`Null` when it is not).
pub async fn json(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null)
}

async fn csrf(pass: &Pass) -> String {
    let session = json(reqwest::get(pass.health_url("/api/session")).await.unwrap()).await;
    session["csrf"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_json_follows_a_real_pass_and_sync_now_starts_another() {
    let pass = Pass::start(512 << 10, &[]).await;
    let first = pass
        .wait_for("the big transfer under way", |d| {
            transfer(d, pass.big).is_some_and(|t| t["bytes"].as_u64() > Some(0))
        })
        .await;
    let t = transfer(&first, pass.big).unwrap();
    assert_eq!(t["total"], pass.big_size);
    assert_eq!(t["name"], "big.mp4");
    assert_eq!(t["resumed_from"], 0);
    assert_eq!(first["now"]["pass"]["claimed"], 2);
    let before = t["bytes"].as_u64().unwrap();
    pass.wait_for("the transfer moving", |d| {
        transfer(d, pass.big)
            .is_some_and(|t| t["bytes"].as_u64() > Some(before) && t["rate_bytes_per_s"].as_u64() > Some(0))
    })
    .await;

    pass.s3.rate(0);
    let done = pass
        .wait_for("the pass finished", |d| {
            d["now"]["pass"].is_null() && !d["history"]["passes"][0].is_null()
        })
        .await;
    let broken = failure(&done, pass.broken).expect("the corrupt file is listed under failures");
    assert_eq!(
        broken["name"],
        super::dashboard::HOSTILE,
        "names come back as they are, for the page to show as text"
    );
    assert_eq!(broken["kind"], "permanent");
    assert!(broken["reason"].as_str().unwrap().contains("ffprobe"), "{broken}");
    let record = &done["history"]["passes"][0];
    assert_eq!(
        (
            record["claimed"].as_u64(),
            record["archived"].as_u64(),
            record["failed"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(record["bytes"], pass.big_size);
    assert_eq!(record["outcome"], "partial");
    assert_eq!(
        done["history"]["daily"].as_array().unwrap().last().unwrap()["bytes"],
        pass.big_size
    );
    assert!(done["now"]["transfers"].as_array().unwrap().is_empty());
    assert!(done["now"]["next_pass_at"].as_u64().unwrap() > done["time"].as_u64().unwrap() + 3000);
    for check in ["postgres", "bucket", "archive", "ledger"] {
        assert_eq!(done["health"]["checks"][check]["ok"], true, "{check}: {done:#}");
    }
    assert!(done["health"]["archive"]["total"].as_u64().unwrap() > 0);
    assert_eq!(done["health"]["owed"]["records"], 0);

    // Retry on a permanent failure says what to do in the backend, and changes nothing.
    let token = csrf(&pass).await;
    let retry = pass.health_url(&format!("/api/retry/{}", pass.broken));
    let (code, body) = post(&retry, &[("x-csrf-token", &token)]).await;
    assert_eq!((code, body["retried"].as_bool()), (200, Some(false)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("approved"), "{body}");
    assert_eq!(pass.rig.status(pass.broken).await, "failed");

    // Sync now: refused without the token, a pass with it.
    let sync = pass.health_url("/api/sync");
    assert_eq!(post(&sync, &[]).await.0, 403);
    assert_eq!(post(&sync, &[("x-csrf-token", "0000")]).await.0, 403);
    let passes = pass.logged("pass finished");
    let (code, body) = post(&sync, &[("x-csrf-token", &token)]).await;
    assert_eq!(code, 202, "{body}");
    let began = Instant::now();
    while pass.logged("pass finished") == passes {
        assert!(began.elapsed() < Duration::from_secs(30), "Sync now started no pass");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_page_is_on_the_health_port_only_and_actions_need_the_admin_token_when_set() {
    let rig = Rig::new().await;
    let mut cmd = rig.command(&["serve"]);
    cmd.env("ADMIN_TOKEN", "let-me-in-please");
    let mut server = spawn(cmd).await;
    let page = reqwest::get(format!("http://{}/", server.health)).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("dashboard.js") && html.contains("Sync now"));
    for asset in ["/dashboard.css", "/dashboard.js"] {
        let resp = reqwest::get(format!("http://{}{asset}", server.health)).await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
    }
    for path in ["/", "/dashboard.js", "/api/dashboard", "/api/session"] {
        let resp = reqwest::get(format!("http://{}{path}", server.files)).await.unwrap();
        assert_eq!(
            resp.status(),
            401,
            "{path} on SERVER_PORT is a file path like any other"
        );
    }

    let session = json(
        reqwest::get(format!("http://{}/api/session", server.health))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(session["admin_token_required"], true);
    let token = session["csrf"].as_str().unwrap();
    let sync = format!("http://{}/api/sync", server.health);
    let (code, _) = post(&sync, &[("x-csrf-token", token)]).await;
    assert_eq!(code, 401, "the admin token is asked for");
    let (code, _) = post(&sync, &[("x-csrf-token", token), ("authorization", "Bearer wrong")]).await;
    assert_eq!(code, 401);
    let (code, body) = post(
        &sync,
        &[("x-csrf-token", token), ("authorization", "Bearer let-me-in-please")],
    )
    .await;
    assert_eq!(code, 409, "allowed, but `serve` runs no passes: {body}");
    assert!(body["message"].as_str().unwrap().contains("no scheduler"), "{body}");

    // POST /adopt follows the same rule.
    let adopt = format!("http://{}/adopt", server.health);
    assert_eq!(post(&adopt, &[]).await.0, 403);
    assert_eq!(post(&adopt, &[("x-csrf-token", token)]).await.0, 401);
    let get = reqwest::get(format!("http://{}/api/sync", server.health))
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    let logs = server.lines.lock().unwrap().join("\n");
    assert!(
        !logs.contains("let-me-in-please") && !logs.contains(token),
        "tokens are never logged"
    );
    server.child.kill().await.unwrap();
}

#[tokio::test]
async fn retry_on_a_transient_failure_clears_its_backoff() {
    let served = crate::server_support::Served::new().await;
    let mut waiting = r2_sync::state::Entry::new(41, "uploads/41.mp4");
    waiting.original_filename = Some("waiting.mp4".into());
    common::ledger::store_at(&served.ledger, &mut waiting, r2_sync::state::Stage::Downloading);
    served
        .ledger
        .update(41, |e| {
            e.error = Some("no answer from the bucket".into());
            e.retry_after = r2_sync::state::entry::now_secs() + 600;
        })
        .unwrap();
    let base = format!("http://{}", served.health);
    let doc = json(reqwest::get(format!("{base}/api/dashboard")).await.unwrap()).await;
    let listed = doc["history"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["media_id"] == 41)
        .unwrap_or_else(|| panic!("the waiting file is listed: {doc:#}"));
    assert_eq!(listed["kind"], "transient");
    assert_eq!(listed["reason"], "no answer from the bucket");

    let session = json(reqwest::get(format!("{base}/api/session")).await.unwrap()).await;
    let token = session["csrf"].as_str().unwrap();
    let (code, body) = post(&format!("{base}/api/retry/41"), &[("x-csrf-token", token)]).await;
    assert_eq!((code, body["retried"].as_bool()), (202, Some(true)), "{body}");
    assert_eq!(
        served.ledger.get(41).unwrap().unwrap().retry_after,
        0,
        "no backoff left"
    );
    let (code, body) = post(&format!("{base}/api/retry/41"), &[("x-csrf-token", token)]).await;
    assert_eq!(code, 409, "nothing to hurry any more: {body}");
    let (code, _) = post(&format!("{base}/api/retry/999"), &[("x-csrf-token", token)]).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_resumed_transfer_shows_the_offset_it_resumed_from() {
    let segment = r2_sync::sync::download::SEGMENT;
    let fault = format!("download@{}", 3 * segment + 1000);
    let pass = Pass::start_after(Some(&fault), 256 << 10, &[]).await;
    let doc = pass
        .wait_for("the resumed transfer", |d| transfer(d, pass.big).is_some())
        .await;
    let t = transfer(&doc, pass.big).unwrap();
    let resumed = t["resumed_from"].as_u64().unwrap();
    assert_eq!(resumed, 3 * segment, "from the last checkpoint before the crash: {t}");
    assert!(t["bytes"].as_u64().unwrap() >= resumed, "{t}");
    pass.s3.rate(0);
}
