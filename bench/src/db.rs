//! The scratch database, from the harness's synchronous code: one connection, its queries run
//! on the harness's tokio runtime. Values come back as text, NULL as "" (what `psql -At`
//! printed when the harness was bash).

use r2_sync_test_rig::pg::{PgError, Postgres};
use tokio::runtime::Handle;
use tokio_postgres::SimpleQueryMessage;

/// A statement that failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("{sql}: {source}")]
    Sql { sql: String, source: tokio_postgres::Error },
}

pub struct Db {
    handle: Handle,
    client: tokio_postgres::Client,
    pub name: String,
}

impl Db {
    pub fn connect(handle: Handle, pg: &Postgres, name: &str) -> Result<Self, DbError> {
        let client = handle.block_on(pg.connect(name))?;
        Ok(Self {
            handle,
            client,
            name: name.to_owned(),
        })
    }

    fn sql_error(sql: &str) -> impl FnOnce(tokio_postgres::Error) -> DbError + '_ {
        move |source| DbError::Sql {
            sql: sql.split_whitespace().collect::<Vec<_>>().join(" "),
            source,
        }
    }

    /// Runs `sql` (one statement or several), discarding what it returns.
    pub fn exec(&self, sql: &str) -> Result<(), DbError> {
        self.handle
            .block_on(self.client.batch_execute(sql))
            .map_err(Self::sql_error(sql))
    }

    /// The rows `sql` returns, each a list of text values.
    pub fn rows(&self, sql: &str) -> Result<Vec<Vec<String>>, DbError> {
        let messages = self
            .handle
            .block_on(self.client.simple_query(sql))
            .map_err(Self::sql_error(sql))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).unwrap_or("").to_owned()).collect())
                }
                _ => None,
            })
            .collect())
    }

    /// The first value of the first row `sql` returns ("" when none).
    pub fn value(&self, sql: &str) -> Result<String, DbError> {
        Ok(self
            .rows(sql)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or_default())
    }
}
