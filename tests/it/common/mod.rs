//! The test rig: real PostgreSQL (a fresh database per test), a real S3 server (a fresh
//! process and bucket per test), real ffmpeg/ffprobe, temp directories. Nothing is mocked,
//! and nothing skips: a missing part fails the test with a message saying what to install.
#![allow(dead_code)]

pub mod invariants;
pub mod ledger;
pub mod media;
pub mod proxy;
pub mod role;
pub mod webdriver;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use r2_sync::config::Config;
use r2_sync::db::Db;
use r2_sync::storage::{ObjectKey, Storage};

pub const ACCESS_KEY: &str = "rig-access-key";
pub const SECRET_KEY: &str = "rig-secret-key-never-logged";
pub const TUNNEL_SECRET: &str = "rig-tunnel-secret-0123456789abcdef-0123456789";
pub const BUCKET: &str = "media";

/// The machine's PostgreSQL, as the shared rig finds it (`R2SYNC_TEST_PG*`, else
/// 127.0.0.1:5432 as postgres).
fn pg() -> r2_sync_test_rig::pg::Postgres {
    r2_sync_test_rig::pg::Postgres::from_env()
}
fn pg_host() -> String {
    pg().host
}
fn pg_port() -> u16 {
    pg().port
}
fn pg_user() -> String {
    pg().user
}

/// Objects no row owns, planted in every rig's S3 server (bucket, key, bytes): in another
/// bucket, at this bucket's root, and beside the keys tests use. No pass may touch them.
pub const BYSTANDERS: &[(&str, &str, &[u8])] = &[
    ("other", "secret.wav", b"another bucket's secret"),
    (BUCKET, "secret.wav", b"an object at the bucket's root"),
    (BUCKET, "uploads/not-owned.wav", b"an object beside the rows' objects"),
];

/// A key the tests know to be plain.
pub fn object_key(key: &str) -> ObjectKey {
    ObjectKey::new(key).unwrap_or_else(|e| panic!("test key {key:?}: {e}"))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{:08x}", std::process::id(), rand::random::<u32>())
}

/// A database of its own, created from `schema/backend.sql`, dropped on drop.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_with("").await
    }

    /// A database whose server encoding is `SQL_ASCII`: its text columns hold any bytes,
    /// as a backend's may.
    pub async fn create_sql_ascii() -> Self {
        Self::create_with(" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").await
    }

    async fn create_with(options: &str) -> Self {
        let name = unique("r2sync_test");
        pg().create_scratch(&name, options)
            .await
            .unwrap_or_else(|e| panic!("create the test database from schema/backend.sql: {e}"));
        Self { name }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.name).await
    }
}

pub async fn connect(db: &str) -> tokio_postgres::Client {
    pg().connect(db)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for the tests (the README's test command starts it): {e}"))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin_sql_in_drop(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs `sql` on the admin database from a `Drop`, which runs outside any runtime guarantee:
/// on a private runtime on a plain thread. Failures are ignored: it is clean-up.
pub fn admin_sql_in_drop(sql: String) {
    let cleanup = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            drop(connect("postgres").await.batch_execute(&sql).await);
        });
    });
    drop(cleanup.join());
}

/// The test S3 server (`tests/s3-server`), one process per test, killed on drop.
pub struct S3Server {
    _process: r2_sync_test_rig::s3::S3Server,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

pub fn s3_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("R2SYNC_TEST_S3_BIN") {
        return PathBuf::from(path);
    }
    // Integration tests live in target/<profile>/deps; the server binary one level up.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("r2-sync-test-s3");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p r2-sync-test-s3` (the README's test command does)",
        bin.display()
    );
    bin
}

impl S3Server {
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let keys = r2_sync_test_rig::s3::Keys {
            access: ACCESS_KEY,
            secret: SECRET_KEY,
        };
        let process = r2_sync_test_rig::s3::S3Server::start(&s3_server_binary(), root.path(), keys, Stdio::inherit())
            .unwrap_or_else(|e| panic!("start the test S3 server: {e}"));
        let server = Self {
            endpoint: process.endpoint().to_owned(),
            _process: process,
            root,
        };
        std::fs::create_dir_all(server.root.path().join(BUCKET)).unwrap();
        server
    }

    /// Every request line the server received so far (`GET /media/a%20b`), in order.
    pub async fn requests(&self) -> Vec<String> {
        let body = reqwest::get(format!("{}/_requests", self.endpoint))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines().map(str::to_owned).collect()
    }

    /// Stores `bytes` as object `key` of `bucket` the way the server keeps objects (a plain
    /// file), without any client's encoding in between.
    pub fn plant(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = self.root.path().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// The bytes of `bucket`'s object `key`, read as the server keeps it; None if gone.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.path().join(bucket).join(key)).ok()
    }

    /// Body bytes the server has sent in answer to GETs so far.
    pub async fn bytes_sent(&self) -> u64 {
        let body = reqwest::get(format!("{}/_stats", self.endpoint))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["get_body_bytes"].as_u64().unwrap()
    }
}

/// Sends SIGTERM to `child` and waits (at most 10 s) for it to end: its output, and how long
/// it took from the signal.
pub async fn sigterm(child: tokio::process::Child) -> (std::process::Output, std::time::Duration) {
    let pid = child.id().expect("still running").to_string();
    let asked = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exits within 10 s of SIGTERM")
        .unwrap();
    (out, asked.elapsed())
}

/// Everything one test needs: database, S3 server with a bucket, archive and state dirs.
pub struct Rig {
    pub db: TestDb,
    pub s3: S3Server,
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub async fn new() -> Self {
        Self::with_db(TestDb::create().await)
    }

    /// A rig over the database `db`.
    pub fn with_db(db: TestDb) -> Self {
        let s3 = S3Server::start();
        for (bucket, key, bytes) in BYSTANDERS {
            s3.plant(bucket, key, bytes);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("archive")).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        Self { db, s3, dir }
    }

    /// Panics unless the bucket and every one of [`BYSTANDERS`] are as planted.
    pub fn assert_bystanders_untouched(&self, context: &str) {
        assert!(
            self.s3.root.path().join(BUCKET).is_dir(),
            "bucket {BUCKET} is gone: {context}"
        );
        for (bucket, key, bytes) in BYSTANDERS {
            let now = self.s3.object(bucket, key);
            assert_eq!(
                now.as_deref(),
                Some(*bytes),
                "{bucket}/{key}, which no row owns, was changed or deleted: {context}"
            );
        }
    }

    pub fn archive_dir(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The environment r2-sync gets in this rig.
    pub fn env(&self) -> HashMap<String, String> {
        [
            ("DB_HOST", pg_host()),
            ("DB_PORT", pg_port().to_string()),
            ("DB_NAME", self.db.name.clone()),
            ("DB_USER", pg_user()),
            ("DB_SSLMODE", "disable".into()),
            ("R2_ENDPOINT", self.s3.endpoint.clone()),
            ("R2_ACCESS_KEY", ACCESS_KEY.into()),
            ("R2_SECRET_KEY", SECRET_KEY.into()),
            ("R2_BUCKET", BUCKET.into()),
            ("ARCHIVE_DIR", self.archive_dir().display().to_string()),
            ("STATE_DIR", self.state_dir().display().to_string()),
            ("UNRAID_TUNNEL_SECRET", TUNNEL_SECRET.into()),
            ("SERVER_PORT", "0".into()),
            ("HEALTH_PORT", "0".into()),
            ("LOG_LEVEL", "debug".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn config(&self) -> Config {
        Config::from_vars(&self.env()).expect("rig config is valid")
    }

    pub fn storage(&self) -> Storage {
        Storage::new(&self.config().r2).unwrap()
    }

    pub fn db_handle(&self) -> Db {
        Db::new(&self.config().db, "rig").unwrap()
    }

    /// An in-process syncer over this rig, its environment with `overrides` on top.
    pub fn syncer(&self, overrides: &[(&str, &str)]) -> r2_sync::sync::Syncer {
        let mut vars = self.env();
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let cfg = Config::from_vars(&vars).expect("rig config is valid");
        let ledger_path = self.state_dir().join(r2_sync::context::LEDGER_FILE);
        let ctx = r2_sync::context::Context {
            db: Db::new(&cfg.db, "rig").unwrap(),
            storage: Storage::new(&cfg.r2).unwrap(),
            ledger: std::sync::Arc::new(r2_sync::state::Ledger::open(&ledger_path).unwrap()),
            cfg: std::sync::Arc::new(cfg),
            log: r2_sync::logging::discard(),
            metrics: std::sync::Arc::new(r2_sync::metrics::Metrics::new()),
            activity: std::sync::Arc::default(),
        };
        r2_sync::sync::Syncer::new(std::sync::Arc::new(ctx))
    }

    /// The `status` column of media `id`.
    pub async fn status(&self, id: i64) -> String {
        let c = self.db.client().await;
        c.query_one("SELECT status FROM media WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0)
    }

    /// The temp file of media `id`'s download: where one exists in any instance's temp
    /// directory, else where the instance whose state is the rig's `STATE_DIR` would put it.
    pub fn part(&self, id: i64) -> PathBuf {
        let name = format!("{id}.part");
        let temp = self.archive_dir().join(".r2-sync-tmp");
        let existing = std::fs::read_dir(&temp)
            .into_iter()
            .flatten()
            .flatten()
            .map(|dir| dir.path().join(&name))
            .find(|p| p.exists());
        existing.unwrap_or_else(|| {
            let instance = std::fs::read_to_string(self.state_dir().join("instance-id")).unwrap_or_default();
            r2_sync::archive::instance_temp_dir(&self.archive_dir(), instance.trim()).join(name)
        })
    }

    /// Waits until media `id`'s download has written at least `bytes`; its path.
    pub async fn wait_for_part(&self, id: i64, bytes: u64) -> PathBuf {
        let mut part = self.part(id);
        for _ in 0..30_000 {
            part = self.part(id);
            if std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) >= bytes {
                return part;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("{} never reached {bytes} bytes", part.display());
    }

    /// The real `r2-sync` binary with this rig's environment (and nothing inherited).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_r2-sync"));
        cmd.args(args)
            .env_clear()
            .envs(self.env())
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.kill_on_drop(true);
        cmd
    }

    /// Inserts an approved media row and returns its id.
    pub async fn insert_media(&self, m: &NewMedia<'_>) -> i64 {
        let client = self.db.client().await;
        let row = client
            .query_one(
                "INSERT INTO media (user_id, title, description, original_filename, content_type, file_size, r2_key, \
                 status, storage_location, approved_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'r2', now()) RETURNING id",
                &[
                    &m.user_id,
                    &m.title,
                    &"a test upload",
                    &m.original_filename,
                    &m.content_type,
                    &m.file_size,
                    &m.r2_key,
                    &m.status,
                ],
            )
            .await
            .unwrap();
        row.get(0)
    }
}

pub struct NewMedia<'a> {
    pub user_id: i64,
    pub title: &'a str,
    pub original_filename: &'a str,
    pub content_type: &'a str,
    pub file_size: Option<i64>,
    pub r2_key: &'a str,
    pub status: &'a str,
}

impl<'a> NewMedia<'a> {
    pub fn approved(r2_key: &'a str, original_filename: &'a str) -> Self {
        Self {
            user_id: 7,
            title: "clip",
            original_filename,
            content_type: "video/mp4",
            file_size: None,
            r2_key,
            status: "approved",
        }
    }
}
