//! The real binary: `serve` read by clients nobody here wrote (curl, ffprobe), the `token`
//! command (with the server holding the ledger, and without), `healthcheck`, SIGTERM, and
//! the whole stdout checked for tokens.

use crate::common;
use crate::server_support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{media, object_key, NewMedia, Rig};
use r2_sync::server::auth::{Grant, Verifier};
use r2_sync::state::{Ledger, Stage};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
    pub(crate) files: SocketAddr,
    pub(crate) health: SocketAddr,
}

/// Runs `r2-sync serve` and waits for its two `listening` lines.
async fn serve(rig: &Rig) -> Server {
    spawn(rig.command(&["serve"])).await
}

/// Runs a server command (`serve` or `run`) and waits for its two `listening` lines.
pub(crate) async fn spawn(mut cmd: Command) -> Server {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (mut files, mut health) = (None, None);
    while files.is_none() || health.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), reader.next_line())
            .await
            .expect("r2-sync serve said nothing")
            .unwrap()
            .expect("r2-sync serve exited");
        lines.lock().unwrap().push(line.clone());
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["msg"] == "listening" {
            let port = v["addr"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<u16>()
                .unwrap();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match v["role"].as_str() {
                Some("files") => files = Some(addr),
                Some("health") => health = Some(addr),
                other => panic!("role {other:?}"),
            }
        }
    }
    let rest = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            rest.lock().unwrap().push(line);
        }
    });
    Server {
        child,
        lines,
        files: files.unwrap(),
        health: health.unwrap(),
    }
}

async fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().await.unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

async fn curl(args: &[&str]) {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30"])
        .args(args)
        .output()
        .await
        .expect("curl is required for the tests (apt-get install curl; scripts/test.sh does)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn curl_and_ffprobe_read_what_serve_serves() {
    let rig = Rig::new().await;
    let video = std::fs::read(media::video(rig.dir.path(), "clip.mp4", 2)).unwrap();
    // Archived in PostgreSQL and the ledger; the server holds the ledger, so `token` must
    // find the path through PostgreSQL.
    let id = rig
        .insert_media(&NewMedia::approved("uploads/clip.mp4", "my clip.mp4"))
        .await;
    let rel = format!("2026/03/{id}-my clip.mp4");
    rig.db
        .client()
        .await
        .execute(
            "UPDATE media SET status = 'archived', archive_path = $2 WHERE id = $1",
            &[&id, &rel],
        )
        .await
        .unwrap();
    {
        let ledger = Ledger::open(&server_support::ledger_path(&rig)).unwrap();
        server_support::archive(&rig, &ledger, id as u64, &rel, &video, Stage::Done, "my clip.mp4");
    } // the binary takes the ledger's lock

    let mut server = serve(&rig).await;
    let base = format!("http://{}", server.files);
    let (code, link, err) = run(&mut rig.command(&["token", "--media-id", &id.to_string(), "--base-url", &base])).await;
    assert_eq!(code, Some(0), "{err}");
    let link = link.trim().to_owned();
    assert!(
        link.starts_with(&format!("{base}/2026/03/{id}-my%20clip.mp4?token=")),
        "{link}"
    );
    let token = link.rsplit('=').next().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part");
    curl(&["-r", "100-199", "-o", part.to_str().unwrap(), &link]).await;
    assert!(std::fs::read(&part).unwrap() == video[100..200], "curl range");
    let resumed = dir.path().join("resumed.mp4");
    std::fs::write(&resumed, &video[..1000]).unwrap();
    curl(&["-C", "-", "-o", resumed.to_str().unwrap(), &link]).await;
    assert!(
        std::fs::read(&resumed).unwrap() == video,
        "curl -C - resumed to the whole file"
    );

    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type",
            "-of",
            "json",
            &link,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: Value = serde_json::from_slice(&out.stdout).unwrap();
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 2.0).abs() < 0.2, "{probe}");
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"video") && kinds.contains(&"audio"), "{probe}");

    let health_port = server.health.port().to_string();
    let (code, _, err) = run(rig.command(&["healthcheck"]).env("HEALTH_PORT", &health_port)).await;
    assert_eq!(code, Some(0), "{err}");

    let pid = server.child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    let lines = server.lines.lock().unwrap().clone();
    let access: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["msg"] == "access" && v["path"] != "/health")
        .collect();
    assert!(access.len() >= 4, "{access:?}");
    let ffprobe_seeks = access
        .iter()
        .filter(|v| v["status"] == 206 && !["bytes=100-199", "bytes=1000-"].contains(&v["range"].as_str().unwrap()))
        .count();
    assert!(
        ffprobe_seeks >= 2,
        "ffprobe opens with bytes=0- and seeks with ranges: {access:?}"
    );
    assert!(
        access.iter().any(|v| v["status"] == 206 && v["range"] == "bytes=1000-"),
        "curl -C -"
    );
    assert!(
        access.iter().all(|v| v["media_id"] == id),
        "every download authorized: {access:?}"
    );
    for line in &lines {
        assert!(
            !line.contains(&token) && !line.contains("token="),
            "token logged: {line}"
        );
    }
}

#[tokio::test]
async fn token_links_come_from_the_ledger_and_unarchived_media_get_none() {
    let rig = Rig::new().await;
    {
        let ledger = Ledger::open(&server_support::ledger_path(&rig)).unwrap();
        server_support::archive(&rig, &ledger, 5, "2026/03/5-über.mp4", b"x", Stage::Done, "über.mp4");
        server_support::archive(
            &rig,
            &ledger,
            6,
            "2026/03/6-part.mp4",
            b"x",
            Stage::Downloading,
            "p.mp4",
        );
    }
    let args = [
        "token",
        "--media-id",
        "5",
        "--user-id",
        "3",
        "--ttl",
        "10m",
        "--base-url",
        "https://f.example/",
    ];
    let (code, out, err) = run(&mut rig.command(&args)).await;
    assert_eq!(code, Some(0), "{err}");
    let (url, token) = out.trim().split_once("?token=").unwrap();
    assert_eq!(url, "https://f.example/2026/03/5-%C3%BCber.mp4");
    let grant = Verifier::new(&rig.config().server).verify(token).unwrap();
    assert_eq!(
        grant,
        Grant {
            media_id: 5,
            user_id: 3
        }
    );

    for id in ["6", "7"] {
        let (code, out, err) = run(&mut rig.command(&["token", "--media-id", id])).await;
        assert_eq!(code, Some(1), "media {id}: {out}");
        assert!(err.contains("not archived"), "{err}");
    }
}

#[tokio::test]
async fn healthcheck_fails_when_nothing_answers() {
    let rig = Rig::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = run(rig.command(&["healthcheck"]).env("HEALTH_PORT", port.to_string())).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("/health"), "{err}");
}

#[tokio::test]
async fn run_archives_on_its_first_pass_and_serves_what_it_archived() {
    let rig = Rig::new().await;
    let src = tempfile::tempdir().unwrap();
    let video = std::fs::read(media::video(src.path(), "clip.mp4", 1)).unwrap();
    rig.storage()
        .put(&object_key("uploads/run.mp4"), &video, "video/mp4")
        .await
        .unwrap();
    let id = rig
        .insert_media(&NewMedia::approved("uploads/run.mp4", "clip.mp4"))
        .await;

    let mut cmd = rig.command(&["run"]);
    cmd.env("SYNC_INTERVAL", "1h");
    let mut server = spawn(cmd).await;
    let client = rig.db.client().await;
    let mut archived = false;
    for _ in 0..600 {
        let status: String = client
            .query_one("SELECT status FROM media WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        if status == "archived" {
            archived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        archived,
        "the first pass runs at start-up: {:?}",
        server.lines.lock().unwrap()
    );

    let base = format!("http://{}", server.files);
    let (code, link, err) = run(&mut rig.command(&["token", "--media-id", &id.to_string(), "--base-url", &base])).await;
    assert_eq!(code, Some(0), "{err}");
    let body = reqwest::get(link.trim()).await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(
        body.bytes().await.unwrap().as_ref(),
        video.as_slice(),
        "serves what it archived"
    );

    // `status` while `run` holds the ledger asks the running process instead. The row turns
    // `archived` before the object is deleted, so the pass may still be finishing.
    let health_port = server.health.port().to_string();
    let mut entry = Value::Null;
    let id_arg = id.to_string();
    for _ in 0..200 {
        let status = ["status", "--json", "--media-id", &id_arg];
        let (code, out, err) = run(rig.command(&status).env("HEALTH_PORT", &health_port)).await;
        assert_eq!(code, Some(0), "{err}");
        entry = serde_json::from_str(&out).unwrap();
        if entry["stage"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(entry["media_id"], id);
    assert_eq!(entry["stage"], "done", "{entry}");
    let (code, out, _) = run(rig.command(&["status"]).env("HEALTH_PORT", &health_port)).await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("1 entries: done=1"), "{out}");

    // The container's probe needs nothing but HEALTH_PORT.
    let probe = Command::new(env!("CARGO_BIN_EXE_r2-sync"))
        .arg("healthcheck")
        .env_clear()
        .env("HEALTH_PORT", server.health.port().to_string())
        .status()
        .await
        .unwrap();
    assert!(probe.success());

    let pid = server.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success());
    let lines = server.lines.lock().unwrap().join("\n");
    assert!(lines.contains("scheduler stopped"), "{lines}");
}
