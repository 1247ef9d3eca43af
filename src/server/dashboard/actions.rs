//! The dashboard's buttons, and the rule every state-changing request on the health port
//! follows (`POST /adopt` too): the process's CSRF token in `X-CSRF-Token`, which only a
//! page served from this port can read (`GET /api/session` is not readable cross-origin),
//! and, when `ADMIN_TOKEN` is set, `Authorization: Bearer <ADMIN_TOKEN>`.

use http::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use thiserror::Error;
use warp::reply::Response;

use super::super::Shared;
use crate::activity::WakeError;
use crate::state::{entry::now_secs, Stage};

pub const CSRF_HEADER: &str = "x-csrf-token";

/// Why a state-changing request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("missing or wrong X-CSRF-Token (GET /api/session gives it)")]
    Csrf,
    #[error("missing or wrong admin token (Authorization: Bearer <ADMIN_TOKEN>)")]
    AdminToken,
}

impl Refusal {
    pub fn response(&self) -> Response {
        let status = match self {
            Refusal::Csrf => StatusCode::FORBIDDEN,
            Refusal::AdminToken => StatusCode::UNAUTHORIZED,
        };
        let mut resp = super::super::json(status, &json!({ "error": self.to_string() }));
        if *self == Refusal::AdminToken {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"r2-sync\""));
        }
        resp
    }
}

/// A fresh token per process start: 128 random bits, hex.
pub fn new_csrf_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Equal without telling, by the time taken, how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The rule for every POST on the health port. Tokens are never logged.
pub fn authorize(csrf: &str, admin_token: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
    let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    if !same(sent, csrf.as_bytes()) {
        return Err(Refusal::Csrf);
    }
    if let Some(admin) = admin_token {
        let sent = headers
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        let token = sent.strip_prefix(b"Bearer ").unwrap_or_default();
        if !same(token, admin.as_bytes()) {
            return Err(Refusal::AdminToken);
        }
    }
    Ok(())
}

/// [`authorize`] with this process's tokens: None when allowed, else the refusal to answer.
pub fn refused(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let admin = shared.ctx.cfg.server.admin_token.as_ref().map(|t| t.expose());
    let refusal = authorize(&shared.csrf, admin, headers).err()?;
    slog::info!(shared.ctx.log, "action refused"; "error" => refusal.to_string());
    Some(refusal.response())
}

/// `GET /api/session`: the CSRF token, and whether the buttons need the admin token.
pub fn session(shared: &Shared) -> Response {
    let body = json!({
        "csrf": shared.csrf,
        "admin_token_required": shared.ctx.cfg.server.admin_token.is_some(),
    });
    let mut resp = super::super::json(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /api/sync`: 202 when a pass starts, 409 when one runs or no scheduler is here.
pub fn sync_now(shared: &Shared, headers: &HeaderMap) -> Response {
    if let Some(refusal) = refused(shared, headers) {
        return refusal;
    }
    match shared.ctx.activity.wake() {
        Ok(()) => {
            slog::info!(shared.ctx.log, "pass asked for on the dashboard");
            super::super::json(
                StatusCode::ACCEPTED,
                &json!({ "started": true, "message": "pass starting" }),
            )
        }
        Err(e @ (WakeError::Running | WakeError::NoScheduler)) => super::super::json(
            StatusCode::CONFLICT,
            &json!({ "started": false, "message": e.to_string() }),
        ),
    }
}

/// `POST /api/retry/<media id>`: a transient failure is retried at once (its backoff
/// cleared, a pass asked for); a permanent one is not r2-sync's to undo, and the answer
/// says what the owner does in the backend.
pub async fn retry(shared: &Shared, headers: &HeaderMap, media_id: u64) -> Response {
    if let Some(refusal) = refused(shared, headers) {
        return refusal;
    }
    let ledger = shared.ctx.ledger.clone();
    let found = tokio::task::spawn_blocking(move || ledger.get(media_id)).await;
    let entry = match found {
        Ok(Ok(Some(entry))) => entry,
        Ok(Ok(None)) => {
            return answer(
                StatusCode::NOT_FOUND,
                false,
                format!("media {media_id} is not in the ledger"),
            )
        }
        Ok(Err(e)) => return answer(StatusCode::INTERNAL_SERVER_ERROR, false, e.to_string()),
        Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, false, e.to_string()),
    };
    match entry.stage() {
        Stage::Failed | Stage::FailPending => answer(StatusCode::OK, false, permanent_advice(media_id, &entry.error)),
        stage if !stage.is_terminal() && entry.retry_after > now_secs() => retry_now(shared, media_id).await,
        stage => answer(
            StatusCode::CONFLICT,
            false,
            format!("media {media_id} is {stage}, not waiting for a retry"),
        ),
    }
}

fn permanent_advice(media_id: u64, error: &Option<String>) -> String {
    let reason = error.as_deref().unwrap_or("no reason recorded");
    format!(
        "media {media_id} failed for good ({reason}); its object stays in R2. r2-sync does not \
         retry it by itself: fix the file in the backend (upload it again if it is damaged), then \
         set the media row's status back to approved; the next pass takes it."
    )
}

async fn retry_now(shared: &Shared, media_id: u64) -> Response {
    let ledger = shared.ctx.ledger.clone();
    let cleared = tokio::task::spawn_blocking(move || ledger.update(media_id, |e| e.retry_after = 0)).await;
    if let Err(e) = cleared
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, false, e);
    }
    slog::info!(shared.ctx.log, "retry asked for on the dashboard"; "media_id" => media_id);
    let message = match shared.ctx.activity.wake() {
        Ok(()) => format!("media {media_id}: retrying now"),
        Err(WakeError::Running) => format!("media {media_id}: retried by the next pass (one is running)"),
        Err(WakeError::NoScheduler) => format!("media {media_id}: retried by the next pass of the sync process"),
    };
    answer(StatusCode::ACCEPTED, true, message)
}

fn answer(status: StatusCode, retried: bool, message: String) -> Response {
    super::super::json(status, &json!({ "retried": retried, "message": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn posts_need_the_csrf_token_and_the_admin_token_when_set() {
        let ok = headers(&[(CSRF_HEADER, "abc")]);
        assert_eq!(authorize("abc", None, &ok), Ok(()));
        assert_eq!(authorize("abc", None, &headers(&[])), Err(Refusal::Csrf));
        assert_eq!(
            authorize("abc", None, &headers(&[(CSRF_HEADER, "abd")])),
            Err(Refusal::Csrf)
        );
        assert_eq!(authorize("abc", Some("s3cret"), &ok), Err(Refusal::AdminToken));
        let both = headers(&[(CSRF_HEADER, "abc"), ("authorization", "Bearer s3cret")]);
        assert_eq!(authorize("abc", Some("s3cret"), &both), Ok(()));
        let wrong = headers(&[(CSRF_HEADER, "abc"), ("authorization", "Bearer s3cre")]);
        assert_eq!(authorize("abc", Some("s3cret"), &wrong), Err(Refusal::AdminToken));
    }
}
