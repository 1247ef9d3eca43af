//! The dashboard at `/` on the health port (never on the file port, which faces the tunnel):
//! one HTML page, one stylesheet and one script, embedded in the binary, that poll
//! `GET /api/dashboard` ([`api`]) and press the buttons of [`actions`].

pub mod actions;
mod api;

use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::{HeaderMap, Method};
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::Shared;

const PAGE: &str = include_str!("assets/index.html");
const STYLE: &str = include_str!("assets/dashboard.css");
const SCRIPT: &str = include_str!("assets/dashboard.js");

/// Nothing from elsewhere, no inline script or style, never framed: a file name shown on the
/// page can at worst be text.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`, `/dashboard.css`, `/dashboard.js`, `/api/session`, `/api/dashboard`;
/// `POST /api/sync`, `/api/retry/<media id>`.
pub fn routes(shared: Arc<Shared>) -> BoxedFilter<(Response,)> {
    let with_shared = warp::any().map(move || shared.clone());
    let file = |path: &'static str, body: &'static str, kind: &'static str| {
        warp::path(path)
            .and(warp::path::end())
            .and(warp::method())
            .map(move |m: Method| super::only_get(&m).unwrap_or_else(|| asset(body, kind)))
    };
    let page = warp::path::end()
        .and(warp::method())
        .map(|m: Method| super::only_get(&m).unwrap_or_else(|| asset(PAGE, "text/html; charset=utf-8")));
    let style = file("dashboard.css", STYLE, "text/css; charset=utf-8");
    let script = file("dashboard.js", SCRIPT, "text/javascript; charset=utf-8");
    let session = warp::path!("api" / "session")
        .and(warp::method())
        .and(with_shared.clone())
        .map(|m: Method, shared: Arc<Shared>| super::only_get(&m).unwrap_or_else(|| actions::session(&shared)));
    let snapshot = warp::path!("api" / "dashboard")
        .and(warp::method())
        .and(with_shared.clone())
        .then(|m: Method, shared: Arc<Shared>| async move {
            match super::only_get(&m) {
                Some(refused) => refused,
                None => api::snapshot(&shared).await,
            }
        });
    let sync = warp::path!("api" / "sync")
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(with_shared.clone())
        .map(|m: Method, headers: HeaderMap, shared: Arc<Shared>| match m {
            Method::POST => actions::sync_now(&shared, &headers),
            _ => only_post(),
        });
    let retry = warp::path!("api" / "retry" / u64)
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(with_shared)
        .then(
            |id: u64, m: Method, headers: HeaderMap, shared: Arc<Shared>| async move {
                match m {
                    Method::POST => actions::retry(&shared, &headers, id).await,
                    _ => only_post(),
                }
            },
        );
    page.or(style)
        .unify()
        .or(script)
        .unify()
        .or(session)
        .unify()
        .or(snapshot)
        .unify()
        .or(sync)
        .unify()
        .or(retry)
        .unify()
        .boxed()
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    // The assets change with the binary only; a restart after an upgrade must show the new.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

fn only_post() -> Response {
    let mut resp = super::method_not_allowed();
    resp.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_small_and_fetches_nothing_from_elsewhere() {
        let total = PAGE.len() + STYLE.len() + SCRIPT.len();
        assert!(total < 100 * 1024, "{total} bytes");
        for text in [PAGE, STYLE, SCRIPT] {
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"));
        }
        // Data reaches the page as text only.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML") && !SCRIPT.contains("document.write"));
    }
}
