//! `r2-sync token`: a download link as the backend would sign it.

use std::process::ExitCode;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::Config;
use crate::context::LEDGER_FILE;
use crate::db::{names, Db};
use crate::server::auth::{self, Grant};
use crate::state::{Ledger, LedgerError};

/// Everything but RFC 3986 unreserved characters is percent-encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `r2-sync token`: prints `<base-url>/<encoded archive path>?token=<jwt>`.
pub(super) async fn token(cfg: &Config, media_id: u64, user_id: u64, ttl: Duration, base_url: &str) -> ExitCode {
    let path = match archived_path(cfg, media_id).await {
        Ok(Some(path)) => path,
        Ok(None) => {
            eprintln!("r2-sync: media {media_id} is not archived (no archived file in the ledger or PostgreSQL)");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("r2-sync: cannot look up media {media_id}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match auth::sign(&cfg.server, Grant { media_id, user_id }, ttl) {
        Ok(token) => {
            println!("{}", download_link(base_url, &path, &token));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("r2-sync: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The archive path of an archived media: the ledger's answer, else PostgreSQL's. A running
/// `serve`/`run` holds the ledger, so "in use" simply means asking PostgreSQL.
async fn archived_path(cfg: &Config, media_id: u64) -> Result<Option<String>, String> {
    match Ledger::open(&cfg.state_dir.join(LEDGER_FILE)) {
        Ok(ledger) => {
            let entry = ledger.get(media_id).map_err(|e| e.to_string())?;
            if let Some(path) = entry
                .filter(|e| e.stage().has_archived_file())
                .and_then(|e| e.archive_path)
            {
                return Ok(Some(path));
            }
        }
        Err(LedgerError::InUse { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let id = i64::try_from(media_id).map_err(|_| "media id out of range".to_owned())?;
    let db = Db::new(&cfg.db, "r2-sync-token").map_err(|e| e.to_string())?;
    let row = tokio::time::timeout(crate::check::CHECK_TIMEOUT, db.row(id))
        .await
        .map_err(|_| "PostgreSQL did not answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(row
        .filter(|r| r.status == names::STATUS_ARCHIVED && r.deleted_at.is_none())
        .and_then(|r| r.archive_path))
}

/// The link the backend would hand out for `archive_path`.
pub fn download_link(base_url: &str, archive_path: &str, token: &str) -> String {
    let path: Vec<String> = archive_path
        .split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect();
    format!("{}/{}?token={token}", base_url.trim_end_matches('/'), path.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_each_segment() {
        assert_eq!(
            download_link("https://files.example.com/", "2026/03/42-über clip?#.mp4", "a.b.c"),
            "https://files.example.com/2026/03/42-%C3%BCber%20clip%3F%23.mp4?token=a.b.c"
        );
        let decoded = crate::server::request_path::decode("/2026/03/42-%C3%BCber%20clip%3F%23.mp4");
        assert_eq!(decoded.as_deref(), Some("2026/03/42-über clip?#.mp4"), "round trip");
    }
}
