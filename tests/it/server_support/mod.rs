//! Shared by the file-server tests: a rig with archived files in the archive and the ledger,
//! the server started in-process with its logs captured, and raw HTTP for requests no
//! well-behaved client would send.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use r2_sync::config::Config;
use r2_sync::context::Context;
use r2_sync::context::LEDGER_FILE;
use r2_sync::server::auth::{self, Grant};
use r2_sync::server::{serve, Limits, Running};
use r2_sync::state::{Entry, Ledger, Stage};
use serde_json::Value;
use slog::Drain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::common::Rig;

/// A Vec<u8> the JSON logger writes into, readable while the server runs.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    pub fn logger(&self) -> slog::Logger {
        let json = slog_json::Json::new(self.clone()).add_default_keys().build();
        slog::Logger::root(Mutex::new(json).fuse(), slog::o!())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    pub fn lines(&self) -> Vec<Value> {
        self.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Access lines for `path`, waiting up to 5 s for `count` of them (a line is written as
    /// the response completes, which may be a moment after the client has read it).
    pub async fn access(&self, path: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<Value> = self
                .lines()
                .into_iter()
                .filter(|l| l["msg"] == "access" && l["path"] == path)
                .collect();
            if found.len() >= count || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The rig, its ledger, and a server over them.
pub struct Served {
    pub rig: Rig,
    pub cfg: Config,
    pub ledger: Arc<Ledger>,
    pub logs: LogBuffer,
    pub files: SocketAddr,
    pub health: SocketAddr,
    pub shutdown: CancellationToken,
    pub running: Option<Running>,
}

pub fn ledger_path(rig: &Rig) -> PathBuf {
    rig.state_dir().join(LEDGER_FILE)
}

/// Writes `bytes` at `rel` in the archive and records media `id` there as `stage`.
pub fn archive(rig: &Rig, ledger: &Ledger, id: u64, rel: &str, bytes: &[u8], stage: Stage, original: &str) {
    let dest = rig.archive_dir().join(rel);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, bytes).unwrap();
    record(ledger, id, rel, stage, original);
}

pub fn record(ledger: &Ledger, id: u64, rel: &str, stage: Stage, original: &str) {
    let mut entry = Entry::new(id, format!("uploads/{id}"));
    entry.archive_path = Some(rel.to_owned());
    entry.content_type = Some("video/mp4".into());
    entry.original_filename = Some(original.to_owned());
    crate::common::ledger::store_at(ledger, &mut entry, stage);
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

impl Served {
    pub async fn new() -> Self {
        Self::with(Rig::new().await, &[], Limits::default()).await
    }

    /// Starts the server on `rig` with `overrides` applied to its environment.
    pub async fn with(rig: Rig, overrides: &[(&str, &str)], limits: Limits) -> Self {
        let mut env: HashMap<String, String> = rig.env();
        for (k, v) in overrides {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let cfg = Config::from_vars(&env).unwrap();
        let ledger = Arc::new(Ledger::open(&ledger_path(&rig)).unwrap());
        let logs = LogBuffer::default();
        let ctx = Context {
            cfg: Arc::new(cfg.clone()),
            ledger: ledger.clone(),
            db: r2_sync::db::Db::new(&cfg.db, "server-test").unwrap(),
            storage: r2_sync::storage::Storage::new(&cfg.r2).unwrap(),
            log: logs.logger(),
            metrics: Arc::new(r2_sync::metrics::Metrics::new()),
            activity: Arc::default(),
        };
        let limits = Limits {
            bind_ip: [127, 0, 0, 1].into(),
            ..limits
        };
        let shutdown = CancellationToken::new();
        let running = serve(Arc::new(ctx), limits, shutdown.clone()).await.unwrap();
        Self {
            rig,
            cfg,
            ledger,
            logs,
            files: running.files_addr,
            health: running.health_addr,
            shutdown,
            running: Some(running),
        }
    }

    pub fn archive(&self, id: u64, rel: &str, bytes: &[u8], original: &str) {
        archive(&self.rig, &self.ledger, id, rel, bytes, Stage::Done, original);
    }

    pub fn token(&self, media_id: u64) -> String {
        let grant = Grant { media_id, user_id: 7 };
        auth::sign(&self.cfg.server, grant, Duration::from_secs(3600)).unwrap()
    }

    /// `http://127.0.0.1:port/<target>`, `target` already encoded.
    pub fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.files)
    }

    pub fn link(&self, media_id: u64, rel: &str) -> String {
        self.url(&format!("/{rel}?token={}", self.token(media_id)))
    }

    /// Stops the server and waits for its drain.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.finished().await;
        }
    }
}

/// A raw HTTP/1.1 exchange: sends `request` as is, reads until the server closes.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    drop(tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `GET <target>` with `Connection: close`; returns the status code and the whole answer.
pub async fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: files.example\r\nConnection: close\r\n\r\n");
    let answer = raw(addr, request.as_bytes()).await;
    (status_of(&answer), answer)
}

pub fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// A token signed with `alg` and `secret`.
pub fn hs(alg: Algorithm, secret: &str, claims: &Value) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A token with an arbitrary header and the HS256 signature of the good token's claims.
pub fn forged(header: &Value, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let sig = hs(Algorithm::HS256, crate::common::TUNNEL_SECRET, claims);
    let sig = sig.rsplit('.').next().unwrap().to_owned();
    format!(
        "{}.{}.{sig}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    )
}

/// A timestamp `secs` from now.
pub fn at(secs: i64) -> i64 {
    get_current_timestamp() as i64 + secs
}
