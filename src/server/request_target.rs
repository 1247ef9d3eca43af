//! RFC 9112 §3.2 checks that hyper leaves to the server, made before warp sees a request:
//! warp assumes every target has a path (an authority-form target such as
//! `CONNECT host:443` makes it panic), and only origin-form and absolute-form targets name a
//! resource we serve. An HTTP/1.1 request also needs exactly one valid `Host` (§3.2: a
//! server MUST answer 400 otherwise). Pure logic; the listener turns a refusal into an answer.

use http::header::{HeaderMap, HOST};
use http::uri::Authority;
use http::{Method, Request, Uri, Version};
use thiserror::Error;

/// Why a request is answered before routing.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    /// CONNECT asks for a tunnel; we are no proxy (405, like any method but GET and HEAD).
    #[error("CONNECT is not served")]
    Connect,
    /// `OPTIONS *` asks about the server as a whole: only GET and HEAD (405 with `Allow`).
    #[error("OPTIONS * : only GET and HEAD are served")]
    OptionsAsterisk,
    /// `host:port` is only for CONNECT (RFC 9112 §3.2.3).
    #[error("authority-form target {0:?} without CONNECT")]
    AuthorityForm(String),
    /// `*` is only for OPTIONS (RFC 9112 §3.2.4).
    #[error("asterisk-form target with {0}")]
    AsteriskForm(Method),
    #[error("HTTP/1.1 request without Host")]
    NoHost,
    #[error("{0} Host header fields")]
    ManyHosts(usize),
    #[error("Host is not host[:port]")]
    BadHost,
}

impl TargetError {
    /// 405 (with `Allow: GET, HEAD`) when only the method is wrong, 400 otherwise.
    pub fn is_method(&self) -> bool {
        matches!(self, TargetError::Connect | TargetError::OptionsAsterisk)
    }
}

/// Ok when warp may route `req`: its target is origin-form or absolute-form, so it has a
/// path, and its `Host` is in order.
pub fn check<B>(req: &Request<B>) -> Result<(), TargetError> {
    check_host(req.version(), req.headers())?;
    check_target(req.method(), req.uri())
}

/// One `Host` for HTTP/1.1 (HTTP/1.0 may omit it), never two, and either empty (allowed when
/// the target has no authority) or `host[:port]` without userinfo (RFC 9110 §7.2). Checked
/// for absolute-form targets too, whose authority then names the host.
fn check_host(version: Version, headers: &HeaderMap) -> Result<(), TargetError> {
    let hosts: Vec<_> = headers.get_all(HOST).iter().collect();
    let host = match hosts.as_slice() {
        [] if version == Version::HTTP_10 || version == Version::HTTP_09 => return Ok(()),
        [] => return Err(TargetError::NoHost),
        [one] => one.as_bytes(),
        many => return Err(TargetError::ManyHosts(many.len())),
    };
    if host.is_empty() {
        return Ok(());
    }
    match Authority::try_from(host) {
        Ok(a) if !a.as_str().contains('@') => Ok(()),
        _ => Err(TargetError::BadHost),
    }
}

fn check_target(method: &Method, uri: &Uri) -> Result<(), TargetError> {
    if method == Method::CONNECT {
        return Err(TargetError::Connect);
    }
    let asterisk = uri.scheme().is_none() && uri.authority().is_none() && uri.path() == "*";
    match (asterisk, method == Method::OPTIONS) {
        (true, true) => return Err(TargetError::OptionsAsterisk),
        (true, false) => return Err(TargetError::AsteriskForm(method.clone())),
        (false, _) => {}
    }
    // What warp needs: hyper gives authority-form targets no path-and-query at all.
    match uri.path_and_query() {
        Some(_) => Ok(()),
        None => Err(TargetError::AuthorityForm(uri.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(method: &str, target: &str) -> Result<(), TargetError> {
        let method: Method = method.parse().unwrap();
        check_target(&method, &target.parse().unwrap())
    }

    fn host(version: Version, hosts: &[&str]) -> Result<(), TargetError> {
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(HOST, h.parse().unwrap());
        }
        check_host(version, &headers)
    }

    #[test]
    fn http_1_1_needs_exactly_one_valid_host() {
        use Version as V;
        for ok in [&["files.example"][..], &["files.example:8080"], &["[::1]:80"], &[""]] {
            assert_eq!(host(V::HTTP_11, ok), Ok(()), "{ok:?}");
        }
        assert_eq!(host(V::HTTP_10, &[]), Ok(()));
        assert_eq!(host(V::HTTP_11, &[]), Err(TargetError::NoHost));
        assert_eq!(host(V::HTTP_10, &["a", "a"]), Err(TargetError::ManyHosts(2)));
        for bad in ["a b", "u@files.example", "files.example/x", "a:b:c"] {
            assert_eq!(host(V::HTTP_11, &[bad]), Err(TargetError::BadHost), "{bad:?}");
        }
    }

    #[test]
    fn origin_and_absolute_form_are_routed() {
        for target in ["/", "/a/b?token=x", "http://files.example", "https://files.example/a?b"] {
            assert_eq!(verdict("GET", target), Ok(()), "{target}");
        }
    }

    #[test]
    fn connect_authority_and_asterisk_forms_are_answered_before_routing() {
        assert_eq!(verdict("CONNECT", "127.0.0.1:8080"), Err(TargetError::Connect));
        assert_eq!(verdict("CONNECT", "/"), Err(TargetError::Connect));
        assert_eq!(
            verdict("GET", "127.0.0.1:8080"),
            Err(TargetError::AuthorityForm("127.0.0.1:8080".into()))
        );
        assert_eq!(verdict("OPTIONS", "*"), Err(TargetError::OptionsAsterisk));
        assert_eq!(verdict("GET", "*"), Err(TargetError::AsteriskForm(Method::GET)));
        assert!(TargetError::Connect.is_method() && !TargetError::AsteriskForm(Method::GET).is_method());
    }
}
