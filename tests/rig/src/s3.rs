//! The test S3 server (`tests/s3-server`, binary `r2-sync-test-s3`): one process over a root
//! directory (its buckets are the root's folders, each object a plain file), on a free port
//! of 127.0.0.1 it picks itself and announces (`listening on ADDR`). Killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net;

/// Why the server did not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("cannot start the test S3 server {}: {source}", bin.display())]
    Spawn { bin: PathBuf, source: std::io::Error },
    #[error("the test S3 server said {0:?}, not 'listening on ADDR'")]
    Announce(String),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("GET /_stats answered {status}: {body}")]
    Stats { status: u16, body: String },
}

/// The access key pair the server accepts.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub access: &'a str,
    pub secret: &'a str,
}

/// A running test S3 server.
pub struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    /// Starts `bin` over `root` with `keys`; its standard error goes to `stderr`. Returns once
    /// it listens.
    pub fn start(bin: &Path, root: &Path, keys: Keys<'_>, stderr: Stdio) -> Result<Self, S3Error> {
        let mut child = Command::new(bin)
            .arg("--access-key")
            .arg(keys.access)
            .arg("--secret-key")
            .arg(keys.secret)
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|source| S3Error::Spawn {
                bin: bin.to_owned(),
                source,
            })?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // An error reading leaves the line empty, which is refused below.
            drop(BufReader::new(out).read_line(&mut line));
        }
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            drop(child.kill());
            drop(child.wait());
            return Err(S3Error::Announce(line));
        };
        let endpoint = format!("http://{addr}");
        Ok(Self { child, endpoint })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Body bytes the server has sent in answer to GETs so far (its `GET /_stats`).
    pub fn get_body_bytes(&self) -> Result<u64, S3Error> {
        let answer = net::get(&format!("{}/_stats", self.endpoint), &[], Duration::from_secs(5))?;
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        match (answer.status, stats_counter(&body, "get_body_bytes")) {
            (200, Some(n)) => Ok(n),
            (status, _) => Err(S3Error::Stats { status, body }),
        }
    }
}

/// The number after `"name":` in the server's flat JSON statistics.
pub fn stats_counter(json: &str, name: &str) -> Option<u64> {
    let at = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let digits: String = json[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Clean-up: a server already gone is fine.
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_stats() {
        let json = r#"{"get_requests":3,"get_body_bytes": 1048576,"put_requests":1}"#;
        assert_eq!(stats_counter(json, "get_body_bytes"), Some(1_048_576));
        assert_eq!(stats_counter(json, "get_requests"), Some(3));
        assert_eq!(stats_counter(json, "missing"), None);
    }
}
