//! The file server: archived files to holders of a backend-signed link, behind a Cloudflare
//! Tunnel, plus health endpoints. Warp filters route; hyper connections are driven by
//! [`listener`] so that limits and a graceful drain can be set. [`serve`] binds and returns
//! at once, so the same process can run the sync scheduler beside it on the same ledger.
//!
//! Layout: pure logic ([`auth`], `range`, `conditional`, `request_path`, `request_target`,
//! `headers`) apart from I/O (`lookup`, `fs`, `files`, `health`, `dashboard`, `listener`, `access_log`).

mod access_log;
pub mod auth;
mod conditional;
mod dashboard;
mod files;
mod fs;
mod headers;
mod health;
mod listener;
mod lookup;
mod range;
pub(crate) mod request_path;
mod request_target;

#[cfg(test)]
mod fuzz_tests;
mod scrape;
mod sendfile;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::context::Context;
use crate::metrics::HttpRoute;
pub use dashboard::actions::CSRF_HEADER;
use listener::{Listener, Routes};

/// Protocol limits. The defaults suit the tunnel; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Address both listeners bind (all interfaces: the tunnel daemon may be another container).
    pub bind_ip: IpAddr,
    /// Request line plus headers; more is answered 431.
    pub max_header_bytes: usize,
    /// Time to receive a request's headers, also how long an idle keep-alive connection
    /// stays open (hyper starts the clock when it waits for the next request).
    pub header_read_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed (a client that
    /// stopped reading a download holds a connection slot otherwise).
    pub idle_timeout: Duration,
    /// Read size for buffered file bodies. 512 KiB: a player's typical 1 MiB range takes two
    /// reads (each a hop to the blocking pool), while a connection holds at most two chunks.
    /// With `sendfile`, the buffer size for reading an uncached region into the page cache.
    pub chunk_size: usize,
    /// Connection cap of the health listener (the file listener uses `MAX_CONNECTIONS`).
    pub health_max_connections: usize,
    /// File bodies go from the page cache to the socket with `sendfile` (module sendfile);
    /// when false, they are read into memory in `chunk_size` pieces (the buffered path).
    pub sendfile: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            chunk_size: 512 * 1024,
            health_max_connections: 64,
            sendfile: true,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({role}): {source}")]
    Bind {
        role: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// State every request handler shares: the process's one [`Context`] (its ledger and metrics
/// shared with the sync scheduler when both run) and what only the server keeps.
struct Shared {
    ctx: Arc<Context>,
    limits: Limits,
    verifier: auth::Verifier,
    deep: health::DeepCache,
    /// Asked of every POST on the health port (`dashboard::actions`).
    csrf: String,
}

/// A started server: where it listens, and a way to wait for its drain after shutdown.
#[derive(Debug)]
pub struct Running {
    pub files_addr: SocketAddr,
    /// Equal to `files_addr` when `HEALTH_PORT` equals `SERVER_PORT`.
    pub health_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Resolves once `shutdown` was cancelled and every connection has finished or was cut
    /// at the end of `SHUTDOWN_GRACE`.
    pub async fn finished(self) {
        for task in self.tasks {
            // A task that panicked was logged by the panic hook; the others still finish.
            drop(task.await);
        }
    }
}

/// Binds the file port and the health port, logs `{"msg":"listening","role":..,"addr":..}`
/// for each, and serves until `shutdown` is cancelled.
pub async fn serve(ctx: Arc<Context>, limits: Limits, shutdown: CancellationToken) -> Result<Running, ServerError> {
    let server_cfg = &ctx.cfg.server;
    let (ip, port, health_port) = (limits.bind_ip, server_cfg.port, server_cfg.health_port);
    let separate_health = health_port == 0 || health_port != port;
    let files = bind("files", SocketAddr::new(ip, port), server_cfg.max_connections).await?;
    let health = match separate_health {
        true => Some(
            bind(
                "health",
                SocketAddr::new(ip, health_port),
                limits.health_max_connections,
            )
            .await?,
        ),
        false => None,
    };
    let shared = Arc::new(Shared {
        verifier: auth::Verifier::new(server_cfg),
        limits,
        deep: health::DeepCache::default(),
        csrf: dashboard::actions::new_csrf_token(),
        ctx,
    });
    let files_addr = local_addr(&files);
    let health_addr = health.as_ref().map_or(files_addr, local_addr);
    slog::info!(shared.ctx.log, "listening"; "role" => "files", "addr" => files_addr.to_string());
    slog::info!(shared.ctx.log, "listening"; "role" => "health", "addr" => health_addr.to_string());
    let mut tasks = Vec::new();
    // Health details (error texts) only on the health port; the file port faces the tunnel.
    let file_routes = routes(shared.clone(), true, true);
    tasks.push(tokio::spawn(listener::run(
        files,
        file_routes,
        shared.clone(),
        shutdown.clone(),
    )));
    if let Some(health) = health {
        let health_routes = routes(shared.clone(), false, false);
        tasks.push(tokio::spawn(listener::run(health, health_routes, shared, shutdown)));
    }
    Ok(Running {
        files_addr,
        health_addr,
        tasks,
    })
}

async fn bind(role: &'static str, addr: SocketAddr, max_connections: usize) -> Result<Listener, ServerError> {
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { role, addr, source })?;
    Ok(Listener {
        role,
        tcp,
        max_connections,
    })
}

fn local_addr(l: &Listener) -> SocketAddr {
    l.tcp.local_addr().expect("a bound socket has an address")
}

/// `/health`, `/health/deep`, then either the files or (`/metrics` and) a 404. `public`:
/// faces the tunnel. Each answer carries its [`HttpRoute`] for the request counters.
fn routes(shared: Arc<Shared>, serve_files: bool, public: bool) -> Routes {
    let health = health_routes(shared.clone(), public);
    // Metrics never face the tunnel: on the file port `/metrics` is just a path.
    let rest = match serve_files {
        true => file_routes(shared),
        false => health_port_routes(shared),
    };
    health.or(rest).unify().boxed()
}

/// The handlers' shared state, to each request.
fn with_shared(shared: Arc<Shared>) -> impl Filter<Extract = (Arc<Shared>,), Error = Infallible> + Clone {
    warp::any().map(move || shared.clone())
}

/// `/health`, and `/health/deep` with its error texts only where not `public`.
fn health_routes(shared: Arc<Shared>, public: bool) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let shallow = warp::path!("health")
        .and(warp::method())
        .map(|m: Method| only_get(&m).unwrap_or_else(health::shallow))
        .map(tag(HttpRoute::Health));
    let deep = warp::path!("health" / "deep")
        .and(warp::method())
        .and(with_shared(shared))
        .then(move |m: Method, shared: Arc<Shared>| async move {
            match only_get(&m) {
                Some(refused) => refused,
                None => health::deep(&shared, !public).await,
            }
        })
        .map(tag(HttpRoute::HealthDeep));
    shallow.or(deep).unify()
}

/// Every other path on the file port: a file (or why not).
fn file_routes(shared: Arc<Shared>) -> Routes {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<sendfile::Regions>())
        .and(with_shared(shared))
        .and_then(|m, path, query, headers, regions, shared| files::handle(shared, m, path, query, headers, regions))
        .map(tag(HttpRoute::File))
        .boxed()
}

/// The rest of the health port: `/metrics`, `/status`, `/adopt`, the dashboard, else a 404.
fn health_port_routes(shared: Arc<Shared>) -> Routes {
    let metrics = warp::path!("metrics")
        .and(warp::method())
        .and(with_shared(shared.clone()))
        .then(|m: Method, shared: Arc<Shared>| async move {
            match only_get(&m) {
                Some(refused) => refused,
                None => scrape::metrics(&shared).await,
            }
        })
        .map(tag(HttpRoute::Metrics));
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let status = warp::path!("status")
        .and(warp::method())
        .and(query)
        .and(with_shared(shared.clone()))
        .then(|m: Method, query: String, shared: Arc<Shared>| async move {
            match only_get(&m) {
                Some(refused) => refused,
                None => scrape::status(&shared, &query).await,
            }
        })
        .map(tag(HttpRoute::Status));
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let adopt = warp::path!("adopt")
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(with_shared(shared.clone()))
        .then(
            |m: Method, query: String, headers: http::HeaderMap, shared: Arc<Shared>| async move {
                match m {
                    Method::POST => match dashboard::actions::refused(&shared, &headers) {
                        None => scrape::adopt(&shared, &query).await,
                        Some(refusal) => refusal,
                    },
                    _ => method_not_allowed(),
                }
            },
        )
        .map(tag(HttpRoute::Adopt));
    let dashboard = dashboard::routes(shared).map(tag(HttpRoute::Dashboard));
    let metrics = metrics.or(status).unify().or(adopt).unify().or(dashboard).unify();
    let unknown = warp::any()
        .map(|| json(StatusCode::NOT_FOUND, &serde_json::json!({ "error": "not found" })))
        .map(tag(HttpRoute::Other));
    metrics.or(unknown).unify().boxed()
}

/// Marks a response with the route that produced it.
fn tag(route: HttpRoute) -> impl Fn(Response) -> Response + Clone {
    move |mut resp: Response| {
        resp.extensions_mut().insert(route);
        resp
    }
}

/// None for GET and HEAD; a 405 for anything else.
fn only_get(m: &Method) -> Option<Response> {
    if m == Method::GET || m == Method::HEAD {
        return None;
    }
    Some(method_not_allowed())
}

/// The answer to a request refused before routing: its target or its `Host` ([`request_target`]).
fn refused(e: &request_target::TargetError) -> Response {
    let resp = match e.is_method() {
        true => method_not_allowed(),
        false => json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": "bad request" })),
    };
    tag(HttpRoute::Other)(resp)
}

/// The answer when a handler panicked.
fn internal_error() -> Response {
    let resp = json(
        StatusCode::INTERNAL_SERVER_ERROR,
        &serde_json::json!({ "error": "internal error" }),
    );
    tag(HttpRoute::Other)(resp)
}

fn method_not_allowed() -> Response {
    let mut resp = json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({ "error": "method not allowed" }),
    );
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
    resp
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = warp::reply::json(body).into_response();
    *resp.status_mut() = status;
    resp
}
