//! The health listener's operator routes: `GET /metrics` (the ledger gauges refreshed with one
//! read of the ledger per scrape, then every metric in the Prometheus text format) and
//! `GET /status` (every ledger entry as JSON: what `r2-sync status` shows while this process
//! holds the ledger).

use http::header::{HeaderValue, CONTENT_TYPE};
use warp::reply::{Reply, Response};

use super::Shared;
use crate::metrics;

pub async fn metrics(shared: &Shared) -> Response {
    let ledger = shared.ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.counts()).await {
        Ok(Ok(counts)) => shared.metrics.observe_ledger(&counts),
        // The gauges keep their last values; the rest is still worth answering.
        Ok(Err(e)) => slog::warn!(shared.log, "metrics: ledger unreadable"; "error" => %e),
        Err(e) => slog::warn!(shared.log, "metrics: ledger read failed"; "error" => %e),
    }
    let mut resp = shared.metrics.render().into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    resp
}

pub async fn status(shared: &Shared) -> Response {
    let ledger = shared.ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.all()).await {
        Ok(Ok(entries)) => warp::reply::json(&entries).into_response(),
        Ok(Err(e)) => super::json(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": e.to_string() }),
        ),
        Err(e) => super::json(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": e.to_string() }),
        ),
    }
}
