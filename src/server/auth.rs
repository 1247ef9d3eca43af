//! Download tokens: HS256 JWTs signed by the backend with `UNRAID_TUNNEL_SECRET`, carrying
//! its `TunnelDownloadClaims` (docs/contract.md §3). `exp` is required, `nbf` honoured, both
//! with `JWT_LEEWAY`; `iss`/`aud` are required only when `JWT_ISSUER`/`JWT_AUDIENCE` are set.

use std::time::Duration;

use http::header::{HeaderMap, AUTHORIZATION};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use thiserror::Error;

use crate::config::ServerConfig;

/// What a valid token grants: one media file, on behalf of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub media_id: u64,
    pub user_id: u64,
}

/// Why a token was refused: 400 for [`AuthError::InvalidRequest`], 401 for the rest; the
/// reason goes to the access log only.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("token sent in more than one way, or Authorization repeated")]
    InvalidRequest,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token signature invalid")]
    BadSignature,
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    #[error("token lacks claim {0}")]
    MissingClaim(String),
    #[error("token issuer not accepted")]
    WrongIssuer,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token malformed")]
    Malformed,
    #[error("token header has a parameter we do not accept")]
    UnexpectedHeader,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

impl AuthError {
    /// A short, stable reason for the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::InvalidRequest => "invalid_request",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongAlgorithm => "wrong_algorithm",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::Malformed => "malformed",
            AuthError::UnexpectedHeader => "unexpected_header",
            AuthError::Sign(_) => "sign",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.into_kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                AuthError::WrongAlgorithm
            }
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim),
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            _ => AuthError::Malformed,
        }
    }
}

/// The claims we read; the registered ones are checked by [`Validation`].
#[derive(Debug, Deserialize)]
struct Claims {
    media_id: u64,
    #[serde(default)]
    user_id: u64,
}

/// Checks tokens against the configured secret and rules. Build once, share.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn new(cfg: &ServerConfig) -> Self {
        // Only HS256: the header's `alg` is never trusted to pick the algorithm.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = cfg.jwt_leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &cfg.jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss"); // set_issuer alone lets a token without `iss` through
        }
        match &cfg.jwt_audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Unconfigured: an `aud` the backend adds must not make the token invalid.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Self {
            key: DecodingKey::from_secret(cfg.tunnel_secret.expose().as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?;
        if !only_expected_parameters(&data.header) {
            return Err(AuthError::UnexpectedHeader);
        }
        Ok(Grant {
            media_id: data.claims.media_id,
            user_id: data.claims.user_id,
        })
    }
}

/// True when the JOSE header holds nothing but `alg` (checked to be HS256 by decoding),
/// `typ` and `kid` (informational: there is one key). Anything else is refused: `crit` names
/// extensions we do not implement, so RFC 7515 §4.1.11 makes the token invalid, and key
/// pointers (`jku`, `jwk`, `x5*`), `cty` (nested tokens), `b64` and the like change how a
/// token would be read, which the backend never asks for. Destructured in full so that a
/// parameter a new `jsonwebtoken` learns to parse must be decided here.
fn only_expected_parameters(header: &Header) -> bool {
    let Header {
        typ: _,
        alg: _,
        kid: _,
        cty,
        jku,
        jwk,
        x5u,
        x5c,
        x5t,
        x5t_s256,
        crit,
        enc,
        zip,
        url,
        nonce,
        extras,
    } = header;
    let keys = [jku, x5u, x5t, x5t_s256, url, nonce, cty];
    keys.iter().all(|k| k.is_none())
        && jwk.is_none()
        && x5c.is_none()
        && crit.is_none()
        && enc.is_none()
        && zip.is_none()
        && extras.inner().is_empty()
}

/// The request's bearer token, from the `token` query parameter (the backend's links) or
/// `Authorization: Bearer` (RFC 6750 §2.1, §2.3; handy for scripts). None when neither
/// carries one (an empty token or another scheme, such as Basic, carries none). Clients
/// MUST NOT use more than one method (§2): two different tokens, or more than one
/// Authorization field, are [`AuthError::InvalidRequest`]; the same token twice is one.
pub fn bearer_token(query: &str, headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let from_query = token_from_query(query).filter(|t| !t.is_empty());
    let mut fields = headers.get_all(AUTHORIZATION).iter();
    let from_header = match (fields.next(), fields.next()) {
        (None, _) => None,
        (Some(one), None) => bearer_credentials(one.to_str().map_err(|_| AuthError::InvalidRequest)?),
        (Some(_), Some(_)) => return Err(AuthError::InvalidRequest),
    };
    match (from_query, from_header) {
        (Some(q), Some(h)) if q != h => Err(AuthError::InvalidRequest),
        (q, h) => Ok(q.or(h)),
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer_credentials(field: &str) -> Option<String> {
    let (scheme, token) = field.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The `token` parameter of a raw query string, percent-decoded; the first one wins.
pub fn token_from_query(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode_str(v).decode_utf8_lossy().into_owned())
}

/// Signs a token for `grant`, valid for `ttl` from now, with the configured `iss`/`aud` so the
/// server accepts it (the `token` command, and tests).
pub fn sign(cfg: &ServerConfig, grant: Grant, ttl: Duration) -> Result<String, AuthError> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        "media_id": grant.media_id,
        "user_id": grant.user_id,
        "iat": now,
        "exp": now + ttl.as_secs(),
    });
    if let Some(iss) = &cfg.jwt_issuer {
        claims["iss"] = iss.as_str().into();
    }
    if let Some(aud) = &cfg.jwt_audience {
        claims["aud"] = aud.as_str().into();
    }
    let key = EncodingKey::from_secret(cfg.tunnel_secret.expose().as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(|e| AuthError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests;
