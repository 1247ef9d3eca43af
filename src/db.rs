//! The backend's PostgreSQL: claiming approved rows, recording outcomes, and looking up
//! archived files. Every name assumed about the backend's schema lives in [`names`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::future::try_join_all;
use serde_json::Value;
use thiserror::Error;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::coalesce::Coalescer;
use crate::config::{DbConfig, SslMode};
use crate::storage::{KeyError, ObjectKey};

pub mod grants;
mod tls;

/// The backend's names (docs/contract.md, "assumed"). A backend that differs changes them
/// here and nowhere else.
pub mod names {
    pub const STATUS_APPROVED: &str = "approved";
    pub const STATUS_ARCHIVED: &str = "archived";
    pub const STATUS_FAILED: &str = "failed";
    pub const LOCATION_UNRAID: &str = "unraid";
    pub const AUDIT_ARCHIVED: &str = "media.archived";
    pub const AUDIT_FAILED: &str = "media.sync_failed";
    pub const ENTITY_MEDIA: &str = "media";
    /// r2-sync's own table: which instance holds which row, and until when. It is the only
    /// table r2-sync creates; it never touches the backend's tables' structure.
    pub const LEASES: &str = "r2_sync_leases";
}

#[derive(Debug, Error)]
pub enum DbError {
    #[error("database: invalid settings: {0}")]
    Setup(String),
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// PostgreSQL answered and would not let this user in (wrong password, no such database
    /// or user, pg_hba.conf): its own words, and what was tried.
    #[error("{target} refused the connection: {words}")]
    Refused { target: String, words: String },
    #[error("database query {what} failed: {}", server_words(source))]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The user lacks a privilege a pass needs; `grant` is the statement that gives it.
    #[error("database refused {what}: {words}{}", grant_hint(grant))]
    Denied {
        what: &'static str,
        words: String,
        grant: Option<String>,
    },
}

fn grant_hint(grant: &Option<String>) -> String {
    match grant {
        Some(grant) => {
            format!("; a missing grant: run `{grant}` as the tables' owner (`r2-sync check` lists every one)")
        }
        None => "; `r2-sync check` lists the grants a pass needs".to_owned(),
    }
}

/// What PostgreSQL itself said (message, detail, hint, SQLSTATE), or the driver's error
/// with its causes: the driver's own Display is only "db error".
pub fn server_words(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut words = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            words.push_str(&format!("; detail: {detail}"));
        }
        if let Some(hint) = db.hint() {
            words.push_str(&format!("; hint: {hint}"));
        }
        return words;
    }
    let mut words = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        words.push_str(&format!(": {c}"));
        cause = c.source();
    }
    words
}

impl DbError {
    /// A few words on what went wrong, for a log line's message.
    pub fn summary(&self) -> &'static str {
        match self {
            DbError::Setup(_) => "database settings invalid",
            DbError::Unreachable(_) => "database unreachable",
            DbError::Refused { .. } => "database refused the connection",
            DbError::Query { .. } => "database refused the statement",
            DbError::Denied { .. } => "permission denied: a grant is missing",
        }
    }

    /// A connection problem (retry later) rather than a query the server refused.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unreachable(_) => true,
            DbError::Query { source, .. } => source.is_closed() || source.code().is_none(),
            DbError::Setup(_) | DbError::Refused { .. } | DbError::Denied { .. } => false,
        }
    }
}

/// A statement's error: a refused privilege names the `GRANT` that gives it to `role`.
fn query_as<'a>(role: &'a str, what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError + 'a {
    move |source| match source.as_db_error() {
        Some(db) if *db.code() == SqlState::INSUFFICIENT_PRIVILEGE => DbError::Denied {
            what,
            words: server_words(&source),
            grant: grants::for_denial(db.message(), what, role),
        },
        _ => DbError::Query { what, source },
    }
}

/// One media row, as far as r2-sync cares. Text fields are untrusted.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRow {
    pub id: i64,
    pub user_id: i64,
    pub title: String,
    pub description: String,
    pub original_filename: String,
    pub content_type: String,
    pub file_size: Option<i64>,
    /// `r2_key` as text, for names and logs (bytes that are not UTF-8 shown as U+FFFD).
    pub r2_key: String,
    /// The object `r2_key` names, checked from the column's own bytes: the only way to a
    /// request (see [`ObjectKey`]).
    pub object_key: Result<ObjectKey, KeyError>,
    pub status: String,
    pub archive_path: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A text column as the bytes the database holds, for [`raw_text`]: converted to UTF-8 where
/// the database knows its encoding, untouched in a `SQL_ASCII` one (whose bytes PostgreSQL
/// refuses to send as text to a UTF-8 client when they are not UTF-8, failing the whole query
/// over one bad row).
macro_rules! raw_text_column {
    ($column:literal) => {
        concat!(
            "CASE WHEN getdatabaseencoding() = 'SQL_ASCII' THEN convert_to(",
            $column,
            ", 'SQL_ASCII') ",
            "ELSE convert_to(",
            $column,
            ", 'UTF8') END AS ",
            $column
        )
    };
}

const MEDIA_COLUMNS: &str = concat!(
    "id, user_id, file_size, approved_at, deleted_at, ",
    raw_text_column!("title"),
    ", ",
    raw_text_column!("description"),
    ", ",
    raw_text_column!("original_filename"),
    ", ",
    raw_text_column!("content_type"),
    ", ",
    raw_text_column!("r2_key"),
    ", ",
    raw_text_column!("status"),
    ", ",
    raw_text_column!("archive_path"),
);

impl MediaRow {
    fn from_row(row: &Row) -> Self {
        let key = raw_text(row, "r2_key");
        Self {
            id: row.get("id"),
            user_id: row.get("user_id"),
            title: text(row, "title"),
            description: text(row, "description"),
            original_filename: text(row, "original_filename"),
            content_type: text(row, "content_type"),
            file_size: row.get("file_size"),
            r2_key: String::from_utf8_lossy(&key).into_owned(),
            object_key: ObjectKey::from_bytes(&key),
            status: text(row, "status"),
            archive_path: opt_text(row, "archive_path"),
            approved_at: row.get("approved_at"),
            deleted_at: row.get("deleted_at"),
        }
    }

    /// Still waiting to be archived: approved and not soft-deleted.
    pub fn is_claimable(&self) -> bool {
        self.status == names::STATUS_APPROVED && self.deleted_at.is_none()
    }
}

/// A text column's bytes, selected by [`raw_text_column`] (NULL as empty): a row whose text
/// is not UTF-8 is still read, and failed for it, instead of stopping every pass.
fn raw_text(row: &Row, column: &str) -> Vec<u8> {
    row.get::<_, Option<Vec<u8>>>(column).unwrap_or_default()
}

/// [`raw_text`] as a string, bytes that are not UTF-8 shown as U+FFFD.
fn text(row: &Row, column: &str) -> String {
    opt_text(row, column).unwrap_or_default()
}

fn opt_text(row: &Row, column: &str) -> Option<String> {
    let raw = row.get::<_, Option<Vec<u8>>>(column)?;
    Some(String::from_utf8_lossy(&raw).into_owned())
}

/// What a compare-and-set on a row found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The row moved; the audit row is written.
    Applied,
    /// An earlier attempt already applied this very change (a replay after a crash).
    AlreadyApplied,
    /// The row is no longer `approved` (or is gone): nothing changed.
    NotApproved { status: Option<String> },
}

#[derive(Clone)]
pub struct Db {
    pool: Pool,
    owner: String,
    /// DB_USER, the role grants are for.
    role: String,
    /// What connections are made to, for errors: `PostgreSQL at host:port (database, user)`.
    target: String,
    records: Arc<Coalescer<ArchivedRecord, Result<Outcome, DbError>>>,
    reads: Arc<Coalescer<i64, Result<Option<MediaRow>, DbError>>>,
}

/// One file's archived record, waiting for its transaction.
struct ArchivedRecord {
    id: i64,
    archive_path: String,
    details: Value,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl Db {
    /// This instance's name, as the lease table knows it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Builds the pool; connections are made on first use, so this never blocks on the
    /// network. `owner` names this instance in the lease table.
    pub fn new(cfg: &DbConfig, owner: impl Into<String>) -> Result<Self, DbError> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&cfg.host)
            .port(cfg.port)
            .dbname(&cfg.name)
            .user(&cfg.user)
            .application_name("r2-sync")
            .connect_timeout(Duration::from_secs(5))
            .keepalives_idle(Duration::from_secs(30))
            .ssl_mode(match cfg.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        if !cfg.password.expose().is_empty() {
            pg.password(cfg.password.expose());
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls_error = |e: rustls::Error| DbError::Setup(format!("TLS: {e}"));
        let manager = match cfg.sslmode {
            SslMode::Disable => Manager::from_config(pg, NoTls, manager_config),
            SslMode::Prefer | SslMode::Require => {
                Manager::from_config(pg, tls::encrypt_only().map_err(tls_error)?, manager_config)
            }
            SslMode::VerifyFull => Manager::from_config(pg, tls::verified().map_err(tls_error)?, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| DbError::Setup(e.to_string()))?;
        Ok(Self {
            pool,
            owner: owner.into(),
            role: cfg.user.clone(),
            target: format!(
                "PostgreSQL at {}:{} (database {}, user {})",
                cfg.host, cfg.port, cfg.name, cfg.user
            ),
            records: Arc::default(),
            reads: Arc::default(),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(|e| self.connect_error(e))
    }

    /// A failed connection as the operator needs it: what was tried, and the server's own
    /// words or the network's (refused, no route, unknown host) instead of "db error".
    fn connect_error(&self, e: deadpool_postgres::PoolError) -> DbError {
        use deadpool_postgres::{PoolError, TimeoutType};
        let target = self.target.clone();
        match e {
            PoolError::Backend(e) if e.as_db_error().is_some() => DbError::Refused {
                target,
                words: server_words(&e),
            },
            PoolError::Backend(e) => DbError::Unreachable(format!("{target}: {}", server_words(&e))),
            PoolError::Timeout(TimeoutType::Wait) => {
                DbError::Unreachable(format!("{target}: every connection busy for 10 s"))
            }
            PoolError::Timeout(_) => DbError::Unreachable(format!(
                "{target}: no answer within 5 s (is the host up, and the port open to this container?)"
            )),
            other => DbError::Unreachable(format!("{target}: {other}")),
        }
    }

    fn query(&self, what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError + '_ {
        query_as(&self.role, what)
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map_err(self.query("SELECT 1"))?;
        Ok(())
    }

    /// Whether this connection to PostgreSQL is encrypted (for `check`).
    pub async fn encrypted(&self) -> Result<bool, DbError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .map_err(self.query("read pg_stat_ssl"))?;
        Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
    }

    /// Every privilege a pass in `mode` needs, and whether this user holds it (PostgreSQL's
    /// `has_*_privilege`, which count grants through roles and PUBLIC as a pass would).
    pub async fn privileges(&self, mode: grants::Mode) -> Result<Vec<(grants::Needed, bool)>, DbError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT current_schema()::text, pg_get_serial_sequence('audit_logs', 'id'), \
                 to_regclass($1) IS NOT NULL",
                &[&names::LEASES],
            )
            .await
            .map_err(self.query("read the schema's layout"))?;
        let schema: String = row.get(0);
        let sequence: Option<String> = row.get(1);
        let layout = grants::Layout {
            audit_sequence: sequence.map(|s| s.strip_prefix(&format!("{schema}.")).map_or(s.clone(), str::to_owned)),
            schema,
            lease_table_exists: row.get(2),
        };
        let mut held = Vec::new();
        for needed in grants::needed(&layout, mode) {
            let function = match needed.on {
                grants::On::Table => "has_table_privilege",
                grants::On::Sequence => "has_sequence_privilege",
                grants::On::Schema => "has_schema_privilege",
            };
            let sql = format!("SELECT {function}($1, $2)");
            let has: bool = client
                .query_one(&sql, &[&needed.object, &needed.privilege])
                .await
                .map_err(self.query("read privileges"))?
                .get(0);
            held.push((needed, has));
        }
        Ok(held)
    }

    /// DB_USER, the role grants name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Creates r2-sync's lease table when missing.
    pub async fn ensure_lease_table(&self) -> Result<(), DbError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (media_id bigint PRIMARY KEY, owner text NOT NULL, \
             expires_at timestamptz NOT NULL)",
            names::LEASES
        );
        self.client()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(self.query("create lease table"))
    }

    /// Claims up to `limit` approved rows, oldest approval first, that no other live instance
    /// holds; our own unexpired leases are re-claimed (a restart resumes them). Row locks
    /// (`SKIP LOCKED`) keep two concurrent claims apart; the lease keeps them apart afterwards.
    pub async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<MediaRow>, DbError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &claim_sql(),
                &[
                    &names::STATUS_APPROVED,
                    &self.owner,
                    &i64::from(limit),
                    &lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(self.query("claim"))?;
        Ok(rows.iter().map(MediaRow::from_row).collect())
    }

    /// Rows the backend holds as archived with a path, after media id `after`, in id order,
    /// at most `limit` (a page of a walk that holds one page at a time).
    pub async fn archived_after(&self, after: i64, limit: i64) -> Result<Vec<MediaRow>, DbError> {
        let sql = format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE status = $1 AND archive_path IS NOT NULL \
             AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&names::STATUS_ARCHIVED, &after, &limit])
            .await
            .map_err(self.query("list archived"))?;
        Ok(rows.iter().map(MediaRow::from_row).collect())
    }

    /// The rows a pass would claim, without claiming them (dry run).
    pub async fn claimable(&self, limit: u32) -> Result<Vec<MediaRow>, DbError> {
        let sql = format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE status = $1 AND deleted_at IS NULL \
             ORDER BY approved_at ASC NULLS LAST, id ASC LIMIT $2"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&names::STATUS_APPROVED, &i64::from(limit)])
            .await
            .map_err(self.query("list approved"))?;
        Ok(rows.iter().map(MediaRow::from_row).collect())
    }

    /// Extends our leases on rows still in progress.
    pub async fn renew(&self, ids: &[i64], lease: Duration) -> Result<(), DbError> {
        let sql = format!(
            "UPDATE {} SET expires_at = now() + make_interval(secs => $3) WHERE owner = $1 AND media_id = ANY($2)",
            names::LEASES
        );
        self.client()
            .await?
            .execute(&sql, &[&self.owner, &ids, &lease.as_secs_f64()])
            .await
            .map_err(self.query("renew"))?;
        Ok(())
    }

    /// Drops our lease on a row we are done with (in any way).
    /// Drops this instance's leases on rows that reached an outcome, in one statement per
    /// pass rather than one commit per file (a late release is harmless: those rows are no
    /// longer approved, so nobody would claim them).
    pub async fn release(&self, ids: &[i64]) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!("DELETE FROM {} WHERE media_id = ANY($1) AND owner = $2", names::LEASES);
        self.client()
            .await?
            .execute(&sql, &[&ids, &self.owner])
            .await
            .map_err(self.query("release"))?;
        Ok(())
    }

    /// The row as it is now. Reads asked for while another is in flight share the next query.
    pub async fn row(&self, id: i64) -> Result<Option<MediaRow>, DbError> {
        let batch = |ids: Vec<i64>| async move {
            match self.rows(&ids).await {
                Ok(rows) => ids
                    .iter()
                    .map(|id| Ok(rows.iter().find(|row| row.id == *id).cloned()))
                    .collect(),
                Err(e) => {
                    let reason = e.to_string();
                    ids.iter().map(|_| Err(DbError::Unreachable(reason.clone()))).collect()
                }
            }
        };
        self.reads
            .submit(id, batch)
            .await
            .unwrap_or_else(|| Err(DbError::Unreachable("a read batch was dropped".into())))
    }

    async fn rows(&self, ids: &[i64]) -> Result<Vec<MediaRow>, DbError> {
        let sql = format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = ANY($1)");
        let client = self.client().await?;
        // Statements run per file are prepared once per connection: one round trip each.
        let statement = client.prepare_cached(&sql).await.map_err(self.query("read rows"))?;
        let rows = client
            .query(&statement, &[&ids])
            .await
            .map_err(self.query("read rows"))?;
        Ok(rows.iter().map(MediaRow::from_row).collect())
    }

    /// approved → archived, plus one `media.archived` audit row, in one transaction.
    /// Records asked for while another is being written share the next transaction (one
    /// commit, one WAL flush for all); if that transaction fails, each is tried on its own,
    /// so that one row cannot hold back the others.
    pub async fn record_archived(&self, id: i64, archive_path: &str, details: &Value) -> Result<Outcome, DbError> {
        let record = ArchivedRecord {
            id,
            archive_path: archive_path.to_owned(),
            details: details.clone(),
        };
        let batch = |records: Vec<ArchivedRecord>| async move {
            if records.len() > 1 {
                if let Ok(outcomes) = self.record_archived_txn(&records).await {
                    return outcomes.into_iter().map(Ok).collect();
                }
            }
            let mut answers = Vec::with_capacity(records.len());
            for record in &records {
                let one = self.record_archived_txn(std::slice::from_ref(record)).await;
                answers.push(one.map(|mut outcomes| outcomes.remove(0)));
            }
            answers
        };
        self.records
            .submit(record, batch)
            .await
            .unwrap_or_else(|| Err(DbError::Unreachable("a record batch was dropped".into())))
    }

    async fn record_archived_txn(&self, records: &[ArchivedRecord]) -> Result<Vec<Outcome>, DbError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.query("begin"))?;
        let mark = txn
            .prepare_cached(
                "UPDATE media SET status = $2, storage_location = $3, archive_path = $4, archived_at = now(), \
                 updated_at = now() WHERE id = $1 AND status = $5 AND deleted_at IS NULL",
            )
            .await
            .map_err(self.query("mark archived"))?;
        // The statements of a batch are sent together (pipelined on the connection), not one
        // round trip each.
        let (txn_ref, mark) = (&txn, &mark);
        let moved = try_join_all(records.iter().map(|r| async move {
            let params: [&(dyn ToSql + Sync); 5] = [
                &r.id,
                &names::STATUS_ARCHIVED,
                &names::LOCATION_UNRAID,
                &r.archive_path,
                &names::STATUS_APPROVED,
            ];
            txn_ref.execute(mark, &params).await
        }))
        .await
        .map_err(self.query("mark archived"))?;
        let audits = records.iter().zip(&moved).filter(|(_, n)| **n > 0);
        try_join_all(audits.map(|(r, _)| insert_audit(&txn, &self.role, r.id, names::AUDIT_ARCHIVED, &r.details)))
            .await?;
        let mut outcomes = Vec::with_capacity(records.len());
        for (record, n) in records.iter().zip(moved) {
            outcomes.push(if n > 0 {
                Outcome::Applied
            } else {
                not_moved(&txn, &self.role, record.id, &record.archive_path).await?
            });
        }
        txn.commit().await.map_err(self.query("commit archived"))?;
        Ok(outcomes)
    }

    /// approved → failed, plus one `media.sync_failed` audit row with the reason.
    pub async fn record_failed(&self, id: i64, details: &Value) -> Result<Outcome, DbError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(self.query("begin"))?;
        let moved = txn
            .execute(
                "UPDATE media SET status = $2, updated_at = now() WHERE id = $1 AND status = $3 AND deleted_at IS NULL",
                &[&id, &names::STATUS_FAILED, &names::STATUS_APPROVED],
            )
            .await
            .map_err(self.query("mark failed"))?;
        if moved == 0 {
            let status: Option<String> = txn
                .query_opt("SELECT status FROM media WHERE id = $1", &[&id])
                .await
                .map_err(self.query("read status"))?
                .map(|r| r.get(0));
            let replay = status.as_deref() == Some(names::STATUS_FAILED);
            return Ok(if replay {
                Outcome::AlreadyApplied
            } else {
                Outcome::NotApproved { status }
            });
        }
        insert_audit(&txn, &self.role, id, names::AUDIT_FAILED, details).await?;
        txn.commit().await.map_err(self.query("commit failed"))?;
        Ok(Outcome::Applied)
    }

    /// The archived media at `archive_path`, for files archived before the ledger knew them.
    pub async fn archived_at_path(&self, archive_path: &str) -> Result<Option<MediaRow>, DbError> {
        let row = self
            .client()
            .await?
            .query_opt(&archived_at_path_sql(), &[&archive_path, &names::STATUS_ARCHIVED])
            .await
            .map_err(self.query("find archived path"))?;
        Ok(row.as_ref().map(MediaRow::from_row))
    }
}

/// The claim's statement (`$1` approved, `$2` owner, `$3` limit, `$4` lease seconds); public
/// so that a test can ask PostgreSQL how it plans it.
pub fn claim_sql() -> String {
    format!(
        "WITH candidates AS (
                SELECT m.id FROM media m
                WHERE m.status = $1 AND m.deleted_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM {leases} l
                                  WHERE l.media_id = m.id AND l.owner <> $2 AND l.expires_at > now())
                ORDER BY m.approved_at ASC NULLS LAST, m.id ASC
                LIMIT $3
                FOR UPDATE OF m SKIP LOCKED),
             leased AS (
                INSERT INTO {leases} (media_id, owner, expires_at)
                SELECT id, $2, now() + make_interval(secs => $4) FROM candidates
                ON CONFLICT (media_id) DO UPDATE
                    SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                    WHERE {leases}.owner = EXCLUDED.owner OR {leases}.expires_at <= now()
                RETURNING media_id)
             SELECT {cols} FROM media WHERE id IN (SELECT media_id FROM leased)
             ORDER BY approved_at ASC NULLS LAST, id ASC",
        leases = names::LEASES,
        cols = MEDIA_COLUMNS,
    )
}

/// The fallback lookup's statement (`$1` archive path, `$2` archived).
pub fn archived_at_path_sql() -> String {
    format!("SELECT {MEDIA_COLUMNS} FROM media WHERE archive_path = $1 AND status = $2 AND deleted_at IS NULL LIMIT 1")
}

/// Why a row did not move to archived: this very change was applied before, or the row is
/// no longer approved.
async fn not_moved(
    txn: &deadpool_postgres::Transaction<'_>,
    role: &str,
    id: i64,
    archive_path: &str,
) -> Result<Outcome, DbError> {
    let current = txn
        .query_opt(
            concat!(
                "SELECT ",
                raw_text_column!("status"),
                ", ",
                raw_text_column!("archive_path"),
                " FROM media WHERE id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(query_as(role, "read status"))?;
    let status: Option<String> = current.as_ref().and_then(|r| opt_text(r, "status"));
    let path: Option<String> = current.as_ref().and_then(|r| opt_text(r, "archive_path"));
    let replay = status.as_deref() == Some(names::STATUS_ARCHIVED) && path.as_deref() == Some(archive_path);
    Ok(if replay {
        Outcome::AlreadyApplied
    } else {
        Outcome::NotApproved { status }
    })
}

async fn insert_audit(
    txn: &deadpool_postgres::Transaction<'_>,
    role: &str,
    id: i64,
    action: &str,
    details: &Value,
) -> Result<(), DbError> {
    let insert = txn
        .prepare_cached(
            "INSERT INTO audit_logs (created_at, user_id, action, entity_type, entity_id, details) \
             VALUES (now(), NULL, $1, $2, $3, $4)",
        )
        .await
        .map_err(query_as(role, "insert audit row"))?;
    txn.execute(&insert, &[&action, &names::ENTITY_MEDIA, &id, details])
        .await
        .map_err(query_as(role, "insert audit row"))?;
    Ok(())
}
