use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::Secret;

const SECRET: &str = "unit-test-secret-0123456789abcdef-0123";

fn config(issuer: Option<&str>, audience: Option<&str>) -> ServerConfig {
    ServerConfig {
        port: 0,
        health_port: 0,
        tunnel_secret: Secret::new(SECRET),
        jwt_leeway: Duration::from_secs(30),
        jwt_issuer: issuer.map(str::to_owned),
        jwt_audience: audience.map(str::to_owned),
        max_connections: 8,
        shutdown_grace: Duration::from_secs(1),
        admin_token: None,
    }
}

fn token(alg: Algorithm, secret: &str, claims: &Value) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn hs256(claims: &Value) -> String {
    token(Algorithm::HS256, SECRET, claims)
}

fn in_(secs: i64) -> i64 {
    get_current_timestamp() as i64 + secs
}

/// A token whose header is `header` and whose signature is HMAC-SHA256 of the usual input,
/// as an attacker would forge it.
fn forged(header: &Value, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    let good = hs256(claims);
    let sig = good.rsplit('.').next().unwrap();
    format!("{input}.{sig}")
}

#[test]
fn a_backend_token_grants_its_media() {
    let v = Verifier::new(&config(None, None));
    let claims = json!({"media_id": 42, "user_id": 7, "exp": in_(3600), "iat": in_(0)});
    assert_eq!(
        v.verify(&hs256(&claims)),
        Ok(Grant {
            media_id: 42,
            user_id: 7
        })
    );
    let no_user = json!({"media_id": 42, "exp": in_(3600), "aud": ["app"], "jti": "x"});
    assert_eq!(
        v.verify(&hs256(&no_user)).unwrap().user_id,
        0,
        "aud ignored when unconfigured"
    );
}

#[test]
fn time_claims_are_enforced_with_leeway() {
    let v = Verifier::new(&config(None, None));
    let at = |exp: i64, nbf: Option<i64>| {
        let mut c = json!({"media_id": 1, "exp": exp});
        if let Some(nbf) = nbf {
            c["nbf"] = nbf.into();
        }
        v.verify(&hs256(&c))
    };
    assert_eq!(at(in_(-120), None), Err(AuthError::Expired));
    assert!(at(in_(-10), None).is_ok(), "within the 30 s leeway");
    assert_eq!(at(in_(3600), Some(in_(600))), Err(AuthError::NotYetValid));
    assert!(at(in_(3600), Some(in_(10))).is_ok(), "nbf within leeway");
    let no_exp = json!({"media_id": 1});
    assert_eq!(v.verify(&hs256(&no_exp)), Err(AuthError::MissingClaim("exp".into())));
    let bad_exp = json!({"media_id": 1, "exp": "tomorrow"});
    assert!(v.verify(&hs256(&bad_exp)).is_err());
}

#[test]
fn only_hs256_with_our_secret_passes() {
    let v = Verifier::new(&config(None, None));
    let claims = json!({"media_id": 1, "exp": in_(3600)});
    assert_eq!(
        v.verify(&token(Algorithm::HS256, "another-secret-0123456789abcdef-xyz", &claims)),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        v.verify(&token(Algorithm::HS512, SECRET, &claims)),
        Err(AuthError::WrongAlgorithm)
    );
    let none = forged(&json!({"alg": "none", "typ": "JWT"}), &claims);
    assert!(v.verify(&none).is_err());
    let unsigned = format!("{}.", none.rsplit_once('.').unwrap().0);
    assert!(v.verify(&unsigned).is_err());
    let rs = forged(&json!({"alg": "RS256", "typ": "JWT"}), &claims);
    assert_eq!(v.verify(&rs), Err(AuthError::WrongAlgorithm));
    for garbage in ["", "abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30."] {
        assert!(v.verify(garbage).is_err(), "{garbage:?}");
    }
    let wrong_type = json!({"media_id": "1", "exp": in_(3600)});
    assert_eq!(v.verify(&hs256(&wrong_type)), Err(AuthError::Malformed));
}

#[test]
fn issuer_and_audience_are_required_when_configured() {
    let v = Verifier::new(&config(Some("backend"), Some("tunnel")));
    let with = |iss: Option<&str>, aud: Option<Value>| {
        let mut c = json!({"media_id": 1, "exp": in_(3600)});
        if let Some(iss) = iss {
            c["iss"] = iss.into();
        }
        if let Some(aud) = aud {
            c["aud"] = aud;
        }
        v.verify(&hs256(&c))
    };
    assert!(with(Some("backend"), Some("tunnel".into())).is_ok());
    assert!(
        with(Some("backend"), Some(json!(["other", "tunnel"]))).is_ok(),
        "golang-jwt arrays"
    );
    assert_eq!(with(Some("evil"), Some("tunnel".into())), Err(AuthError::WrongIssuer));
    assert_eq!(
        with(None, Some("tunnel".into())),
        Err(AuthError::MissingClaim("iss".into()))
    );
    assert_eq!(
        with(Some("backend"), Some("other".into())),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(with(Some("backend"), None), Err(AuthError::MissingClaim("aud".into())));
}

#[test]
fn signed_tokens_verify_under_the_same_config() {
    let cfg = config(Some("backend"), Some("tunnel"));
    let grant = Grant {
        media_id: 9,
        user_id: 3,
    };
    let t = sign(&cfg, grant, Duration::from_secs(60)).unwrap();
    assert_eq!(Verifier::new(&cfg).verify(&t), Ok(grant));
    assert!(Verifier::new(&config(Some("other"), None)).verify(&t).is_err());
}

#[test]
fn the_token_parameter_is_found_in_any_position() {
    assert_eq!(token_from_query("token=abc").as_deref(), Some("abc"));
    assert_eq!(token_from_query("a=1&token=x%2Ey&token=z").as_deref(), Some("x.y"));
    assert_eq!(token_from_query("tokens=1&xtoken=2"), None);
    assert_eq!(token_from_query(""), None);
}

#[test]
fn header_parameters_we_do_not_expect_are_refused() {
    let v = Verifier::new(&config(None, None));
    let claims = json!({"media_id": 1, "exp": in_(3600)});
    let signed = |edit: &dyn Fn(&mut Header)| {
        let mut header = Header::new(Algorithm::HS256);
        edit(&mut header);
        encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    };
    let refused = Err(AuthError::UnexpectedHeader);
    // RFC 7515 §4.1.11: an extension in `crit` we do not understand makes the JWS invalid.
    let crit = signed(&|h| {
        h.crit = Some(vec!["x-ext".into()]);
        h.extras.insert("x-ext", true);
    });
    assert_eq!(v.verify(&crit), refused, "crit");
    assert_eq!(
        v.verify(&signed(&|h| h.crit = Some(vec!["exp".into()]))),
        refused,
        "crit exp"
    );
    assert_eq!(
        v.verify(&signed(&|h| h.jku = Some("https://evil.example/k".into()))),
        refused,
        "jku"
    );
    assert_eq!(
        v.verify(&signed(&|h| h.x5u = Some("https://evil.example/c".into()))),
        refused,
        "x5u"
    );
    assert_eq!(
        v.verify(&signed(&|h| h.cty = Some("JWT".into()))),
        refused,
        "cty (nested JWT)"
    );
    assert_eq!(v.verify(&signed(&|h| h.extras.insert("b64", false))), refused, "b64");
    assert_eq!(AuthError::UnexpectedHeader.reason(), "unexpected_header");
    // What backends' libraries send: alg, typ, and sometimes a key id.
    assert!(v.verify(&signed(&|h| h.kid = Some("k1".into()))).is_ok(), "kid");
    assert!(v.verify(&signed(&|h| h.typ = None)).is_ok(), "no typ");
}

#[test]
fn the_bearer_token_comes_from_the_query_or_the_header_never_two() {
    let headers = |values: &[&str]| {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    };
    let t = |s: &str| Ok(Some(s.to_owned()));
    assert_eq!(bearer_token("token=a", &headers(&[])), t("a"));
    assert_eq!(bearer_token("", &headers(&["Bearer a"])), t("a"));
    assert_eq!(bearer_token("", &headers(&["BEARER   a "])), t("a"));
    assert_eq!(bearer_token("token=a", &headers(&["Bearer a"])), t("a"));
    assert_eq!(bearer_token("token=a", &headers(&["Basic a"])), t("a"));
    for none in [&[][..], &["Basic dTpw"], &["Bearer"], &["Bearer  "]] {
        assert_eq!(bearer_token("token=", &headers(none)), Ok(None), "{none:?}");
    }
    assert_eq!(
        bearer_token("token=a", &headers(&["Bearer b"])),
        Err(AuthError::InvalidRequest)
    );
    assert_eq!(
        bearer_token("", &headers(&["Bearer a", "Bearer a"])),
        Err(AuthError::InvalidRequest)
    );
}
