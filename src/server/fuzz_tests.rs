//! Property tests over the hostile edges of the server: request targets, request paths,
//! Range headers and tokens, fed arbitrary input. They must never panic and never let anything through that
//! the rules forbid.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::auth::{self, Grant, Verifier};
use super::range::{self, RangeAnswer};
use super::request_path;
use super::request_target;
use crate::archive;
use crate::config::{Secret, ServerConfig};

fn server_config() -> ServerConfig {
    ServerConfig {
        port: 0,
        health_port: 0,
        tunnel_secret: Secret::new("fuzz-secret-fuzz-secret-fuzz-secret-0123"),
        jwt_leeway: Duration::from_secs(30),
        jwt_issuer: None,
        jwt_audience: None,
        max_connections: 8,
        shutdown_grace: Duration::from_secs(1),
        admin_token: None,
    }
}

/// Paths built from pieces attackers like, percent-encoded or not.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2E.".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("\\".to_owned()),
        Just("%00".to_owned()),
        Just(".r2-sync-tmp".to_owned()),
        Just("%c0%ae".to_owned()),
        Just("".to_owned()),
        "[a-z0-9 ._%-]{1,12}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 1..6).prop_map(|parts| format!("/{}", parts.join("/")))
}

/// Request targets of every RFC 9112 §3.2 form, plus anything at all.
fn request_target() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        "[a-z0-9.-]{0,20}:[0-9]{1,5}",
        "(http|https|ftp)://[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-z0-9/%?=&.*-]{0,30})?",
        "/[ -~]{0,40}",
        "[*/:?@a-z0-9]{0,12}",
        any::<String>(),
    ]
}

fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        Just(http::Method::GET),
        Just(http::Method::HEAD),
        Just(http::Method::OPTIONS),
        Just(http::Method::CONNECT),
        "[A-Z]{1,10}".prop_map(|m| m.parse().unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoded_paths_always_stay_inside_the_archive(raw in hostile_path()) {
        if let Some(path) = request_path::decode(&raw) {
            prop_assert!(archive::is_contained(Path::new(&path)), "{raw:?} -> {path:?}");
            prop_assert!(!path.split('/').any(|s| s.is_empty() || s.starts_with('.')), "{raw:?} -> {path:?}");
            prop_assert!(!path.chars().any(|c| c.is_control() || c == '\\'), "{raw:?} -> {path:?}");
        }
    }

    /// What warp needs to route without panicking: a path-and-query. Only such targets
    /// get past the check, and never with CONNECT.
    #[test]
    fn only_targets_with_a_path_reach_the_router(target in request_target(), method in method()) {
        let Ok(uri) = target.parse::<http::Uri>() else { return Ok(()) };
        let authority_form = uri.scheme().is_none() && uri.authority().is_some();
        let req = http::Request::builder().method(method.clone()).uri(uri.clone()).body(()).unwrap();
        if request_target::check(&req).is_ok() {
            prop_assert!(uri.path_and_query().is_some(), "{method} {target:?}");
            prop_assert!(method != http::Method::CONNECT && !authority_form && uri.path() != "*", "{method} {target:?}");
        }
    }

    #[test]
    fn any_string_as_a_path_is_handled(raw in any::<String>()) {
        let _ = request_path::decode(&raw);
    }

    #[test]
    fn ranges_are_inside_the_file_or_refused(header in "(bytes|BYTES|items)?=?[-0-9, ]{0,40}", len in 0u64..1 << 40) {
        match range::evaluate(&header, len) {
            RangeAnswer::Partial(r) => {
                prop_assert!(r.start <= r.end && r.end < len, "{header:?} len {len} -> {r:?}");
            }
            RangeAnswer::Full | RangeAnswer::Unsatisfiable => {}
        }
    }

    #[test]
    fn absurd_range_headers_never_panic(header in any::<String>(), len in any::<u64>()) {
        let _ = range::evaluate(&header, len);
    }

    #[test]
    fn arbitrary_tokens_are_refused(token in any::<String>()) {
        prop_assert!(Verifier::new(&server_config()).verify(&token).is_err());
        let _ = auth::token_from_query(&token);
    }

    #[test]
    fn a_tampered_token_is_refused(at in any::<prop::sample::Index>(), with in "[A-Za-z0-9_-]") {
        let cfg = server_config();
        let token = auth::sign(&cfg, Grant { media_id: 42, user_id: 7 }, Duration::from_secs(60)).unwrap();
        let i = at.index(token.len());
        let mut bytes = token.clone().into_bytes();
        bytes[i] = with.as_bytes()[0];
        let tampered = String::from_utf8(bytes).unwrap();
        let verdict = Verifier::new(&cfg).verify(&tampered);
        // Base64url's last character can carry unused bits, so a few edits are no-ops; any
        // accepted token must then grant exactly what was signed.
        if let Ok(grant) = verdict {
            prop_assert_eq!(grant, Grant { media_id: 42, user_id: 7 });
        }
    }

    #[test]
    fn safe_names_are_single_short_visible_components(original in any::<String>(), key in any::<String>()) {
        let name = archive::safe_file_name(&original, &key);
        prop_assert!(!name.is_empty() && name.len() <= 180, "{name:?}");
        prop_assert!(archive::is_contained(Path::new(&name)) && !name.contains('/'), "{name:?}");
        prop_assert!(!name.starts_with('.') && !name.chars().any(archive::is_unsafe_in_name), "{name:?}");
    }
}
