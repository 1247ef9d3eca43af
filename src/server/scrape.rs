//! The health listener's operator routes: `GET /metrics` (the ledger gauges refreshed with one
//! read of the ledger per scrape, then every metric in the Prometheus text format) and
//! `GET /status` (the ledger's summary, or the entries a filter asks for: what `r2-sync
//! status` shows while this process holds the ledger).

use http::header::{HeaderValue, CONTENT_TYPE};
use warp::reply::{Reply, Response};

use bytes::Bytes;

use super::Shared;
use crate::{metrics, status};

pub async fn metrics(shared: &Shared) -> Response {
    let ledger = shared.ctx.ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.counts()).await {
        Ok(Ok(counts)) => shared.ctx.metrics.observe_ledger(&counts),
        // The gauges keep their last values; the rest is still worth answering.
        Ok(Err(e)) => slog::warn!(shared.ctx.log, "metrics: ledger unreadable"; "error" => %e),
        Err(e) => slog::warn!(shared.ctx.log, "metrics: ledger read failed"; "error" => %e),
    }
    let mut resp = shared.ctx.metrics.render().into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    resp
}

/// `GET /status`: the summary as JSON, or with filters (`stage`, `failed`, `media_id`,
/// `since`, `limit`: see [`status::Filters`]) the matching entries as JSON lines, streamed
/// from the ledger as they are read.
pub async fn status(shared: &Shared, query: &str) -> Response {
    let filters = match status::Filters::from_url_query(query) {
        Ok(filters) => filters,
        Err(e) => return super::json(http::StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e })),
    };
    let ledger = shared.ctx.ledger.clone();
    if !filters.lists() {
        return match tokio::task::spawn_blocking(move || status::summary(&ledger)).await {
            Ok(Ok(summary)) => warp::reply::json(&summary).into_response(),
            Ok(Err(e)) => failed(&e.to_string()),
            Err(e) => failed(&e.to_string()),
        };
    }
    let (lines, body) = tokio::sync::mpsc::channel::<Bytes>(64);
    let log = shared.ctx.log.clone();
    tokio::task::spawn_blocking(move || {
        let scanned = ledger.scan(&filters.query(), |found| {
            let line = match found {
                Ok(entry) => serde_json::to_vec(&entry),
                Err(e) => serde_json::to_vec(&serde_json::json!({ "error": e.to_string() })),
            };
            let mut line = line.expect("entries serialise");
            line.push(b'\n');
            // False once the client went away: stop reading.
            lines.blocking_send(Bytes::from(line)).is_ok()
        });
        if let Err(e) = scanned {
            slog::warn!(log, "status: ledger unreadable"; "error" => %e);
        }
    });
    ndjson(futures::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|line| (line, body))
    }))
}

/// `POST /adopt[?max_rate=N]`: `r2-sync adopt` run by this process, which holds the ledger;
/// each outcome streamed as a JSON line, then `{"summary": ...}` (or `{"error": ...}`).
pub async fn adopt(shared: &Shared, query: &str) -> Response {
    let max_rate = match query.strip_prefix("max_rate=") {
        None if query.is_empty() => None,
        Some(rate) => match crate::cutover::parse_rate(rate) {
            Ok(rate) => Some(rate),
            Err(e) => return super::json(http::StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e })),
        },
        None => {
            let e = format!("unknown parameters {query:?} (only max_rate)");
            return super::json(http::StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e }));
        }
    };
    let (lines, body) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let (cfg, db, ledger, log) = (
        shared.ctx.cfg.clone(),
        shared.ctx.db.clone(),
        shared.ctx.ledger.clone(),
        shared.ctx.log.clone(),
    );
    tokio::spawn(async move {
        let send = |value: serde_json::Value| {
            let mut line = value.to_string().into_bytes();
            line.push(b'\n');
            // The client may have gone; the adoption goes on to its end all the same.
            drop(lines.send(Bytes::from(line)));
        };
        let done = crate::cutover::adopt::run(&cfg, &db, &ledger, max_rate, |a| {
            send(serde_json::to_value(a).expect("outcomes serialise"));
        })
        .await;
        match done {
            Ok(summary) => {
                slog::info!(log, "adopt finished"; "adopted" => summary.adopted, "missing" => summary.missing);
                send(serde_json::json!({ "summary": summary }));
            }
            Err(e) => {
                slog::warn!(log, "adopt failed"; "error" => &e);
                send(serde_json::json!({ "error": e }));
            }
        }
    });
    ndjson(futures::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|line| (line, body))
    }))
}

/// A body of JSON lines, sent as they come.
fn ndjson(lines: impl futures::Stream<Item = Bytes> + Send + Sync + 'static) -> Response {
    use futures::StreamExt;
    let mut resp = warp::reply::stream(lines.map(Ok::<_, std::convert::Infallible>)).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp
}

fn failed(error: &str) -> Response {
    super::json(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        &serde_json::json!({ "error": error }),
    )
}
