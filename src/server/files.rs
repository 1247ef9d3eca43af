//! `GET|HEAD /<archive path>?token=<JWT>` (or `Authorization: Bearer`): authorise, find, open, answer (RFC 9110 ranges
//! and conditionals). The token is checked first, so without one every path looks alike
//! (401); with one, a path of another media looks exactly like a path that does not exist.

use std::convert::Infallible;
use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use thiserror::Error;
use warp::path::FullPath;
use warp::reply::{Reply, Response};

use super::access_log::AccessInfo;
use super::auth::{self, AuthError};
use super::conditional::{self, Conditions, Decision, Validators};
use super::fs::{is_absent, open_within, FileChunks};
use super::headers;
use super::lookup::{self, Archived};
use super::range::{self, RangeAnswer};
use super::sendfile::{Regions, SendfileChunks};
use super::{request_path, Shared};
use crate::metrics::BodyPath;

#[derive(Debug, Error)]
pub enum FileError {
    #[error("method not allowed")]
    Method,
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] AuthError),
    #[error("not found")]
    NotFound,
    #[error("lookup unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl FileError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            FileError::Method => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            FileError::Unauthorized(AuthError::InvalidRequest) => (StatusCode::BAD_REQUEST, "one token, sent one way"),
            FileError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "missing or invalid token"),
            FileError::NotFound => (StatusCode::NOT_FOUND, "not found"),
            FileError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable"),
            FileError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        let mut resp = super::json(status, &serde_json::json!({ "error": message }));
        let h = resp.headers_mut();
        match self {
            FileError::Method => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            FileError::Unauthorized(why) => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge(&why)));
            }
            FileError::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        resp
    }
}

/// RFC 6750 §3.1: no error code when the request carried no token at all.
fn challenge(why: &AuthError) -> &'static str {
    match why {
        AuthError::Missing => "Bearer realm=\"r2-sync\"",
        AuthError::InvalidRequest => "Bearer realm=\"r2-sync\", error=\"invalid_request\"",
        _ => "Bearer realm=\"r2-sync\", error=\"invalid_token\"",
    }
}

/// The warp handler: never rejects, always answers, and leaves [`AccessInfo`] for the log.
pub(super) async fn handle(
    shared: Arc<Shared>,
    method: Method,
    path: FullPath,
    query: String,
    headers: HeaderMap,
    regions: Option<Regions>,
) -> Result<Response, Infallible> {
    let mut info = AccessInfo::default();
    let mut resp = match serve(&shared, &method, path.as_str(), &query, &headers, regions, &mut info).await {
        Ok(resp) => resp,
        Err(e) => {
            match &e {
                FileError::Unauthorized(why) => info.denied = Some(why.reason()),
                FileError::Unavailable(why) | FileError::Internal(why) => {
                    slog::warn!(shared.ctx.log, "download failed"; "path" => path.as_str(), "error" => why.as_str());
                }
                _ => {}
            }
            e.into_response()
        }
    };
    resp.extensions_mut().insert(info);
    Ok(resp)
}

/// `regions`: the connection's file regions, when file bodies can go out with `sendfile`.
async fn serve(
    shared: &Shared,
    method: &Method,
    raw_path: &str,
    query: &str,
    req: &HeaderMap,
    regions: Option<Regions>,
    info: &mut AccessInfo,
) -> Result<Response, FileError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(FileError::Method);
    }
    let token = auth::bearer_token(query, req)?.ok_or(AuthError::Missing)?;
    let grant = shared.verifier.verify(&token)?;
    info.grant = Some(grant);
    let rel = request_path::decode(raw_path).ok_or(FileError::NotFound)?;
    let (archived, opened) = find_and_open(shared, &rel, grant.media_id).await?;
    let (file, len, modified) = match opened {
        Ok(found) => found,
        Err(e) if is_absent(&e) => {
            // The ledger says archived, the disk disagrees (or holds a symlink): say so.
            slog::warn!(shared.ctx.log, "archived file missing or not a plain file";
                "media_id" => grant.media_id, "path" => rel, "error" => e.to_string());
            return Err(FileError::NotFound);
        }
        Err(e) => return Err(FileError::Internal(format!("open {rel}: {e}"))),
    };
    let name = rel.rsplit('/').next().unwrap_or(&rel);
    let target = Target {
        file,
        len,
        modified,
        archived: &archived,
        name,
    };
    let body = BodySource {
        chunk_size: shared.limits.chunk_size,
        regions,
        metrics: &shared.ctx.metrics,
    };
    Ok(respond(*method == Method::HEAD, req, target, body))
}

type Opened = std::io::Result<(File, u64, SystemTime)>;

/// The media archived at `rel` if it is `media_id`'s (anything else is NotFound), and the
/// file opened. A request costs one trip to the blocking pool: the ledger lookup and the
/// open go together; PostgreSQL is asked only about paths the ledger has never heard of.
async fn find_and_open(shared: &Shared, rel: &str, media_id: u64) -> Result<(Archived, Opened), FileError> {
    let blocking = |e: tokio::task::JoinError| FileError::Internal(e.to_string());
    let (ledger, root, path) = (
        shared.ctx.ledger.clone(),
        shared.ctx.cfg.archive_dir.clone(),
        rel.to_owned(),
    );
    let (known, opened) = tokio::task::spawn_blocking(move || {
        let known = lookup::from_ledger(&ledger, &path)?;
        let mine = matches!(&known, Some(Some(a)) if a.media_id == media_id);
        Ok::<_, lookup::LookupError>((known, mine.then(|| open(&root, &path))))
    })
    .await
    .map_err(blocking)?
    .map_err(|e| FileError::Unavailable(e.to_string()))?;
    match (known, opened) {
        (Some(Some(archived)), Some(opened)) => Ok((archived, opened)),
        (Some(_), _) => Err(FileError::NotFound),
        (None, _) => {
            let archived = lookup::from_db(&shared.ctx.db, rel)
                .await
                .map_err(|e| FileError::Unavailable(e.to_string()))?
                .filter(|a| a.media_id == media_id)
                .ok_or(FileError::NotFound)?;
            let (root, path) = (shared.ctx.cfg.archive_dir.clone(), rel.to_owned());
            let opened = tokio::task::spawn_blocking(move || open(&root, &path))
                .await
                .map_err(blocking)?;
            Ok((archived, opened))
        }
    }
}

/// The file, its length and modification time.
fn open(root: &std::path::Path, rel: &str) -> Opened {
    let file = open_within(root, rel)?;
    let meta = file.metadata()?;
    Ok((file, meta.len(), meta.modified()?))
}

struct Target<'a> {
    file: File,
    len: u64,
    modified: SystemTime,
    archived: &'a Archived,
    /// The archived file's own name (the fallback download name).
    name: &'a str,
}

/// How a file body is made: sent with `sendfile` through the connection's regions when it
/// has them, else read in `chunk_size` pieces.
struct BodySource<'a> {
    chunk_size: usize,
    regions: Option<Regions>,
    metrics: &'a crate::metrics::Metrics,
}

impl BodySource<'_> {
    fn response(self, file: File, start: u64, count: u64) -> Response {
        match self.regions {
            Some(regions) => {
                self.metrics.file_body(BodyPath::Sendfile);
                let chunks = SendfileChunks::new(file, start, count, self.chunk_size, regions);
                warp::reply::stream(chunks).into_response()
            }
            None => {
                self.metrics.file_body(BodyPath::Buffered);
                warp::reply::stream(FileChunks::new(file, start, count, self.chunk_size)).into_response()
            }
        }
    }
}

fn respond(head: bool, req: &HeaderMap, t: Target, body: BodySource) -> Response {
    let etag = headers::etag(t.len, t.modified);
    let mut h = HeaderMap::new();
    set(&mut h, header::ETAG, &etag);
    set(&mut h, header::LAST_MODIFIED, &headers::http_date(t.modified));
    set(&mut h, header::CACHE_CONTROL, "private");
    set(&mut h, header::ACCEPT_RANGES, "bytes");
    let validators = Validators {
        etag: &etag,
        last_modified: t.modified,
    };
    let use_range = match conditional::evaluate(&Conditions::from_headers(req), &validators) {
        Decision::NotModified => return empty(StatusCode::NOT_MODIFIED, h),
        Decision::PreconditionFailed => return empty(StatusCode::PRECONDITION_FAILED, h),
        Decision::Proceed { use_range } => use_range,
    };
    let answer = match req.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) if use_range => range::evaluate(range, t.len),
        _ => RangeAnswer::Full,
    };
    let (status, start, count) = match answer {
        RangeAnswer::Full => (StatusCode::OK, 0, t.len),
        RangeAnswer::Partial(r) => {
            set(&mut h, header::CONTENT_RANGE, &r.content_range(t.len));
            (StatusCode::PARTIAL_CONTENT, r.start, r.len())
        }
        RangeAnswer::Unsatisfiable => {
            set(&mut h, header::CONTENT_RANGE, &format!("bytes */{}", t.len));
            return empty(StatusCode::RANGE_NOT_SATISFIABLE, h);
        }
    };
    let content_type = headers::content_type(t.archived.content_type.as_deref(), t.name);
    let disposition = headers::content_disposition(&content_type, t.archived.original_filename.as_deref(), t.name);
    set(&mut h, header::CONTENT_TYPE, &content_type);
    set(&mut h, header::CONTENT_DISPOSITION, &disposition);
    set(&mut h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut h, header::CONTENT_LENGTH, &count.to_string());
    let mut resp = if head || count == 0 {
        Response::default()
    } else {
        body.response(t.file, start, count)
    };
    *resp.status_mut() = status;
    resp.headers_mut().extend(h);
    resp
}

/// Sets a header from text we built; values were validated upstream, so a failure here is
/// a bug worth noticing in tests, and in production the header is simply left out.
fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => debug_assert!(false, "invalid {name} value {value:?}"),
    }
}

fn empty(status: StatusCode, headers: HeaderMap) -> Response {
    let mut resp = Response::default();
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
