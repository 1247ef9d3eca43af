//! RFC 9112 §3.2 checks that hyper leaves to the server, made before warp sees a request:
//! warp assumes every target has a path (an authority-form target such as
//! `CONNECT host:443` makes it panic), and only origin-form and absolute-form targets name a
//! resource we serve. Pure logic; the listener turns a refusal into an answer.

use http::{Method, Request, Uri};
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
}

impl TargetError {
    /// 405 (with `Allow: GET, HEAD`) when only the method is wrong, 400 otherwise.
    pub fn is_method(&self) -> bool {
        matches!(self, TargetError::Connect | TargetError::OptionsAsterisk)
    }
}

/// Ok when warp may route `req`: its target is origin-form or absolute-form, so it has a path.
pub fn check<B>(req: &Request<B>) -> Result<(), TargetError> {
    check_target(req.method(), req.uri())
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
