//! `/health` (the process answers: no dependency touched) and `/health/deep` (PostgreSQL,
//! the bucket, the archive directory, the ledger; each bounded by `check::CHECK_TIMEOUT`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use warp::reply::Response;

use super::Shared;
use crate::check::{self, CheckResult};

/// Deep results are reused this long: the endpoint is reachable through the tunnel, and each
/// run costs a bucket request and a file write, so a burst of callers must not multiply them.
const REUSE_FOR: Duration = Duration::from_secs(2);

/// The last deep run; the lock also makes concurrent callers share one run.
#[derive(Default)]
pub struct DeepCache(Mutex<Option<(Instant, Arc<Vec<CheckResult>>)>>);

pub fn shallow() -> Response {
    super::json(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `verbose` adds each failure's detail; it is off on the public file port, where error
/// texts (host names, paths) would tell strangers about the NAS.
pub async fn deep(shared: &Shared, verbose: bool) -> Response {
    let results = deep_results(shared, REUSE_FOR).await;
    let (status, body) = report(&results, verbose);
    super::json(status, &body)
}

/// The deep checks, run again only when the last run is older than `max_age`.
pub async fn deep_results(shared: &Shared, max_age: Duration) -> Arc<Vec<CheckResult>> {
    let mut last = shared.deep.0.lock().await;
    match last.as_ref() {
        Some((at, results)) if at.elapsed() < max_age => results.clone(),
        _ => {
            let results = Arc::new(run_checks(shared).await);
            *last = Some((Instant::now(), results.clone()));
            results
        }
    }
}

async fn run_checks(shared: &Shared) -> Vec<CheckResult> {
    let (pg, bucket, archive, ledger) = tokio::join!(
        check::postgres(&shared.ctx.db),
        check::bucket(&shared.ctx.storage),
        check::directory("archive", &shared.ctx.cfg.archive_dir),
        check::ledger(shared.ctx.ledger.clone()),
    );
    vec![pg, bucket, archive, ledger]
}

/// 200 when every check passed, 503 otherwise; one entry per check.
pub fn report(results: &[CheckResult], verbose: bool) -> (StatusCode, Value) {
    let ok = results.iter().all(|r| r.ok);
    let checks: Map<String, Value> = results
        .iter()
        .map(|r| {
            let error = match (r.ok, verbose) {
                (true, _) => Value::Null,
                (false, true) => r.detail.clone().into(),
                (false, false) => "failed".into(),
            };
            let entry = json!({ "ok": r.ok, "latency_ms": r.latency_ms, "error": error });
            (r.name.to_owned(), entry)
        })
        .collect();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ok { "ok" } else { "fail" }, "checks": checks });
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &'static str, ok: bool) -> CheckResult {
        CheckResult {
            name,
            ok,
            latency_ms: 3,
            detail: format!("{name} detail"),
        }
    }

    #[test]
    fn any_failure_is_a_503_with_its_entry() {
        let (status, body) = report(&[result("postgres", true), result("ledger", true)], true);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(
            body["checks"]["postgres"],
            json!({"ok": true, "latency_ms": 3, "error": null})
        );

        let results = [result("postgres", false), result("bucket", true)];
        let (status, body) = report(&results, true);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "fail");
        assert_eq!(body["checks"]["postgres"]["error"], "postgres detail");
        let (_, quiet) = report(&results, false);
        assert_eq!(quiet["checks"]["postgres"]["error"], "failed");
    }
}
