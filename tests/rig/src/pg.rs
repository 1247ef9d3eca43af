//! The machine's PostgreSQL (127.0.0.1:5432, user postgres, trust authentication, unless
//! `R2SYNC_TEST_PGHOST`, `R2SYNC_TEST_PGPORT`, `R2SYNC_TEST_PGUSER` say otherwise) and scratch
//! databases on it made from `schema/backend.sql`.

use std::path::{Path, PathBuf};

use tokio_postgres::NoTls;

/// Why a database could not be reached, made or dropped.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL at {host}:{port} is not reachable as {user}: {source}")]
    Connect {
        host: String,
        port: u16,
        user: String,
        source: tokio_postgres::Error,
    },
    #[error("{what}: {source}")]
    Sql {
        what: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Schema { path: PathBuf, source: std::io::Error },
}

/// Where the PostgreSQL server is and who logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Postgres {
    /// 127.0.0.1:5432 as postgres, or what the `R2SYNC_TEST_PG*` variables say.
    pub fn from_env() -> Self {
        Self {
            host: std::env::var("R2SYNC_TEST_PGHOST").unwrap_or_else(|_| "127.0.0.1".into()),
            port: std::env::var("R2SYNC_TEST_PGPORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(5432),
            user: std::env::var("R2SYNC_TEST_PGUSER").unwrap_or_else(|_| "postgres".into()),
        }
    }

    /// A connection to database `db`; its connection task runs on the current tokio runtime.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, PgError> {
        let conn_str = format!("host={} port={} user={} dbname={db}", self.host, self.port, self.user);
        let (client, conn) = tokio_postgres::connect(&conn_str, NoTls)
            .await
            .map_err(|source| PgError::Connect {
                host: self.host.clone(),
                port: self.port,
                user: self.user.clone(),
                source,
            })?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Creates database `name` (`options` follow `CREATE DATABASE name`) with the backend's
    /// tables (`schema/backend.sql`).
    pub async fn create_scratch(&self, name: &str, options: &str) -> Result<(), PgError> {
        let sql = |what: &str| {
            let what = what.to_owned();
            move |source| PgError::Sql { what, source }
        };
        self.connect("postgres")
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}{options}"))
            .await
            .map_err(sql("create the scratch database"))?;
        let path = schema_path();
        let schema = std::fs::read_to_string(&path).map_err(|source| PgError::Schema { path, source })?;
        self.connect(name)
            .await?
            .batch_execute(&schema)
            .await
            .map_err(sql("apply schema/backend.sql"))
    }

    /// Drops database `name`, closing its connections first.
    pub async fn drop_database(&self, name: &str) -> Result<(), PgError> {
        self.connect("postgres")
            .await?
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(|source| PgError::Sql {
                what: format!("drop database {name}"),
                source,
            })
    }
}

/// The backend's tables: the workspace's `schema/backend.sql`.
pub fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/backend.sql")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_the_workspace_s() {
        assert!(std::fs::read_to_string(schema_path()).unwrap().contains("CREATE TABLE"));
    }
}
