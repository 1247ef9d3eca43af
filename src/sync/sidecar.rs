//! The JSON sidecar written next to every archived file.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::MediaRow;
use crate::probe::ProbeSummary;

#[derive(Debug, Serialize)]
pub struct Sidecar<'a> {
    pub media_id: i64,
    pub user_id: i64,
    pub title: &'a str,
    pub description: &'a str,
    pub original_filename: &'a str,
    pub content_type: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    pub r2_key: &'a str,
    pub etag: &'a str,
    pub approved_at: Option<DateTime<Utc>>,
    pub archived_at: DateTime<Utc>,
    pub probe: Option<&'a ProbeSummary>,
    pub r2_sync_version: &'static str,
}

pub struct Facts<'a> {
    pub size: u64,
    pub sha256: &'a str,
    pub etag: &'a str,
    pub probe: Option<&'a ProbeSummary>,
}

impl<'a> Sidecar<'a> {
    pub fn new(row: &'a MediaRow, facts: &Facts<'a>) -> Self {
        Self {
            media_id: row.id,
            user_id: row.user_id,
            title: &row.title,
            description: &row.description,
            original_filename: &row.original_filename,
            content_type: &row.content_type,
            size: facts.size,
            sha256: facts.sha256,
            r2_key: &row.r2_key,
            etag: facts.etag,
            approved_at: row.approved_at,
            archived_at: Utc::now(),
            probe: facts.probe,
            r2_sync_version: env!("CARGO_PKG_VERSION"),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("sidecars always serialise");
        out.push(b'\n');
        out
    }
}
