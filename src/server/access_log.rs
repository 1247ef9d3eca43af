//! One JSON access-log line per request, written when the response body is done (or dropped,
//! when the client went away), so `bytes` and `elapsed_ms` describe what was really sent.
//! Only the path is logged, never the query string: it carries the token. The same moment
//! counts the request in the metrics.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use slog::Logger;

use super::auth::Grant;
use crate::metrics::{HttpRoute, Metrics};

/// What the handler learned about the caller, passed to the log in response extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessInfo {
    /// Set once the token checked out.
    pub grant: Option<Grant>,
    /// Why the request was refused (token problems), for operators.
    pub denied: Option<&'static str>,
}

/// The request side of the line, taken before the request is handed on.
#[derive(Debug, Clone)]
pub struct RequestLine {
    method: Method,
    path: String,
    range: Option<String>,
    client_ip: IpAddr,
    start: Instant,
}

impl RequestLine {
    /// `client_ip` is Cloudflare's `CF-Connecting-IP` when it is a valid address (the peer is
    /// the tunnel daemon), else the peer's address.
    pub fn of<B>(req: &Request<B>, peer: SocketAddr) -> Self {
        let header_text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let client_ip = header_text("cf-connecting-ip")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(peer.ip());
        Self {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            range: header_text(header::RANGE.as_str()).map(str::to_owned),
            client_ip,
            start: Instant::now(),
        }
    }
}

/// A response body that counts what it yields and logs the request once.
pub struct LoggedBody<B> {
    inner: B,
    sent: u64,
    /// Body bytes expected (Content-Length); the line is written as the last one goes out.
    expected: Option<u64>,
    pending: Option<Pending>,
}

/// What the line and the counters need once the body is done.
struct Pending {
    log: Logger,
    line: RequestLine,
    status: u16,
    info: AccessInfo,
    route: HttpRoute,
    metrics: Arc<Metrics>,
}

/// Wraps `resp`'s body so the access line is written (and the request counted) when it
/// completes.
pub fn wrap<B: Body>(
    resp: Response<B>,
    line: RequestLine,
    log: &Logger,
    metrics: &Arc<Metrics>,
) -> Response<LoggedBody<B>> {
    let status = resp.status().as_u16();
    let info = resp.extensions().get::<AccessInfo>().copied().unwrap_or_default();
    let route = resp.extensions().get::<HttpRoute>().copied().unwrap_or_default();
    let bodiless = line.method == Method::HEAD || status == 304 || status == 204;
    // Error and health answers carry no Content-Length yet (hyper adds it from the body's
    // size): their exact size hint says how much is due. hyper never polls a body past
    // its known end, so without it they were logged as cut short when dropped.
    let expected = if bodiless {
        Some(0)
    } else {
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| resp.body().size_hint().exact())
    };
    let mut resp = resp.map(|inner| LoggedBody {
        inner,
        sent: 0,
        expected,
        pending: Some(Pending {
            log: log.clone(),
            line,
            status,
            info,
            route,
            metrics: metrics.clone(),
        }),
    });
    if expected == Some(0) {
        resp.body_mut().finish(true);
    }
    resp
}

impl<B> LoggedBody<B> {
    fn finish(&mut self, complete: bool) {
        let Some(Pending {
            log,
            line,
            status,
            info,
            route,
            metrics,
        }) = self.pending.take()
        else {
            return;
        };
        metrics.http_request(route, status, self.sent);
        // Keys only present when they mean something: who was granted, or why not.
        let log = match info.grant {
            Some(g) => log.new(slog::o!("media_id" => g.media_id, "user_id" => g.user_id)),
            None => log,
        };
        let log = match info.denied {
            Some(reason) => log.new(slog::o!("denied" => reason)),
            None => log,
        };
        slog::info!(log, "access";
            "method" => line.method.as_str(),
            "path" => line.path,
            "status" => status,
            "bytes" => self.sent,
            "range" => line.range,
            "elapsed_ms" => line.start.elapsed().as_millis() as u64,
            "client_ip" => line.client_ip.to_string(),
            "complete" => complete,
        );
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                self.sent += f.data_ref().map_or(0, |d| d.len() as u64);
                // Log before the last bytes leave, so a client that has the whole body can
                // already read its line.
                if self.expected == Some(self.sent) {
                    self.finish(true);
                } else if self.inner.is_end_stream() {
                    // A body of unknown length that knows it is done: hyper will not poll
                    // for its end, and drops it.
                    let complete = self.expected.is_none_or(|e| e == self.sent);
                    self.finish(complete);
                }
            }
            Some(Err(_)) => self.finish(false),
            None => {
                let complete = self.expected.is_none_or(|e| e == self.sent);
                self.finish(complete);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        self.finish(false);
    }
}
