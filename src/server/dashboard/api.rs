//! `GET /api/dashboard`: everything the page shows, as one JSON document that scripts may
//! read too. Built from what exists: the scheduler's [`crate::activity`], the deep checks
//! (reused for [`CHECKS_EVERY`], since the page polls), the ledger's summary
//! ([`crate::status::summary`]) and the metrics.

use std::time::Duration;

use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use warp::reply::Response;

use super::super::{health, Shared};
use crate::check::{self, Space};
use crate::state::{entry::now_secs, Entry, Stage};
use crate::status::{self, Summary};

/// Deep checks cost a bucket request and a file write: a page left open runs them at this
/// pace, not at its polling pace.
const CHECKS_EVERY: Duration = Duration::from_secs(15);

/// One failure as the page lists it.
#[derive(Debug, Serialize)]
struct Failure<'a> {
    media_id: u64,
    /// Original file name, else object key: untrusted text, rendered as text.
    name: &'a str,
    reason: &'a str,
    when: u64,
    stage: Stage,
    /// `permanent` (the backend's owner acts) or `transient` (r2-sync retries; Retry hurries it).
    kind: &'static str,
    retry_after: Option<u64>,
}

pub async fn snapshot(shared: &Shared) -> Response {
    let ledger = shared.ctx.ledger.clone();
    let summary = match tokio::task::spawn_blocking(move || status::summary(&ledger)).await {
        Ok(Ok(summary)) => summary,
        Ok(Err(e)) => return failed(&e.to_string()),
        Err(e) => return failed(&e.to_string()),
    };
    let checks = health::deep_results(shared, CHECKS_EVERY).await;
    let (_, checks) = health::report(&checks, true);
    let archive = check::space(shared.ctx.cfg.target_dir());
    let body = document(shared, &summary, checks, archive);
    let mut resp = super::super::json(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}

fn document(shared: &Shared, summary: &Summary, checks: Value, archive: Option<Space>) -> Value {
    let activity = shared.ctx.activity.snapshot();
    let last_ok = shared.ctx.metrics.last_successful_pass();
    json!({
        "time": now_secs(),
        "now": {
            "pass": activity.pass,
            "transfers": activity.transfers,
            "next_pass_at": activity.next_pass_at,
            "scheduled": activity.scheduled,
        },
        "health": {
            "status": checks["status"],
            "checks": checks["checks"],
            "archive": archive,
            "owed": summary.owed,
            "stages": summary.stages,
            "last_successful_pass": (last_ok > 0).then_some(last_ok),
        },
        "history": {
            "passes": activity.passes,
            "daily": activity.daily.iter().map(|(day, bytes)| json!({ "day": day, "bytes": bytes })).collect::<Vec<_>>(),
            "failures": failures(summary),
        },
    })
}

/// Permanent failures and files waiting out a transient one, newest first.
fn failures(summary: &Summary) -> Vec<Failure<'_>> {
    let now = now_secs();
    let permanent = summary.recent_failures.iter().map(|e| failure(e, "permanent", None));
    let transient = summary
        .in_flight
        .iter()
        .filter(|e| e.error.is_some() && e.retry_after > now)
        .map(|e| failure(e, "transient", Some(e.retry_after)));
    let mut all: Vec<Failure> = permanent.chain(transient).collect();
    all.sort_by(|a, b| b.when.cmp(&a.when).then(b.media_id.cmp(&a.media_id)));
    all
}

fn failure<'a>(e: &'a Entry, kind: &'static str, retry_after: Option<u64>) -> Failure<'a> {
    Failure {
        media_id: e.media_id,
        name: e.original_filename.as_deref().unwrap_or(&e.r2_key),
        reason: e.error.as_deref().unwrap_or(""),
        when: e.updated_at,
        stage: e.stage(),
        kind,
        retry_after,
    }
}

fn failed(error: &str) -> Response {
    super::super::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "error": error }))
}
