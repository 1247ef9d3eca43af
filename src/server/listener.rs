//! Accepting and driving connections ourselves, because warp's `run` exposes no limits: a cap
//! on concurrent connections, a header size limit and header-read timeout (slowloris, and
//! idle keep-alive), an idle timeout for a response the client stopped reading, and a
//! graceful drain on shutdown (stop accepting, let responses in flight finish within
//! `SHUTDOWN_GRACE`, then cut what is left).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::access_log::{self, RequestLine};
use super::sendfile::{self, Regions};
use super::{request_target, Shared};

pub(super) type Routes = BoxedFilter<(Response,)>;

pub(super) struct Listener {
    pub role: &'static str,
    pub tcp: TcpListener,
    pub max_connections: usize,
}

/// Accepts until `shutdown`, then drains. Returns when every connection is closed.
pub(super) async fn run(listener: Listener, routes: Routes, shared: Arc<Shared>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(listener.max_connections));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        // At the cap we stop accepting; further clients wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    slog::warn!(shared.ctx.log, "accept failed"; "role" => listener.role, "error" => e.to_string());
                    // Out of descriptors or memory does not clear at once: do not spin on it.
                    if is_exhaustion(&e) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Only latency: a socket that refuses it is served all the same.
        drop(stream.set_nodelay(true));
        let conn = connection(stream, peer, routes.clone(), shared.clone(), shutdown.clone(), permit);
        conns.spawn(conn);
    }
    drop(listener.tcp);
    let grace = shared.ctx.cfg.server.shutdown_grace;
    let open = conns.len();
    let drained = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        slog::warn!(shared.ctx.log, "shutdown grace over, closing connections still open";
            "role" => listener.role, "open" => conns.len(), "grace_s" => grace.as_secs());
        conns.shutdown().await;
    }
    slog::info!(shared.ctx.log, "stopped"; "role" => listener.role, "open_at_shutdown" => open);
}

fn is_exhaustion(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let code = e.raw_os_error();
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|errno| code == Some(errno.raw_os_error()))
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let limits = shared.limits.clone();
    let activity = Activity::new();
    // File bodies reach the socket through these (module sendfile); without them (the
    // buffered path), file handlers read chunks into memory.
    let regions = limits.sendfile.then(Regions::default);
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
        regions: regions.clone().unwrap_or_default(),
    });
    let log = shared.ctx.log.clone();
    let metrics = shared.ctx.metrics.clone();
    let svc = warp::service(routes);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let mut svc = svc.clone();
        let (log, metrics) = (log.clone(), metrics.clone());
        if let Some(regions) = &regions {
            req.extensions_mut().insert(regions.clone());
        }
        async move {
            let line = RequestLine::of(&req, peer);
            let resp = match request_target::check(&req) {
                Err(refused) => super::refused(&refused),
                // A panic in a handler is a bug, but the client still gets an answer and the
                // connection's task lives on (the panic hook has logged it).
                Ok(()) => match AssertUnwindSafe(svc.call(req)).catch_unwind().await {
                    Ok(resp) => resp?,
                    Err(_) => super::internal_error(),
                },
            };
            Ok::<_, Infallible>(access_log::wrap(resp, line, &log, &metrics))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        // The queue strategy: body chunks are written as they are, never copied into one
        // buffer, which the sentinel chunks of file bodies depend on (module sendfile).
        .writev(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut idle = pin!(activity.idle_for(limits.idle_timeout));
    let mut draining = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    slog::debug!(shared.ctx.log, "connection ended with an error"; "error" => e.to_string());
                }
                break;
            }
            () = &mut idle => {
                slog::debug!(shared.ctx.log, "connection idle too long, closed"; "idle_s" => limits.idle_timeout.as_secs());
                break;
            }
            // Finish the response in flight (if any), then close; an idle connection closes now.
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When the connection last moved a byte either way.
#[derive(Clone)]
struct Activity {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    async fn idle_for(self, limit: Duration) {
        loop {
            let deadline = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A socket that records progress in its [`Activity`] and sends file regions with
/// `sendfile` where their sentinel chunks come up.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
    regions: Regions,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = sendfile::poll_write_vectored(&mut this.inner, &this.regions, cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
