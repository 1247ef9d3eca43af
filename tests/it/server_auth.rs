//! Who gets which file: every token failure, the no-existence-oracle rule, path traversal,
//! symlinks, ledger stages, the PostgreSQL fallback, and tokens kept out of the logs.

use crate::common;
use crate::server_support;

use common::{NewMedia, Rig};
use jsonwebtoken::Algorithm;
use r2_sync::server::Limits;
use r2_sync::state::Stage;
use serde_json::{json, Value};
use server_support::{at, forged, hs, random_bytes, raw_get, Served};

const REL_A: &str = "2026/03/1-a.mp4";
const REL_B: &str = "2026/03/2-b.mp4";

async fn two_files() -> Served {
    let served = Served::new().await;
    served.archive(1, REL_A, &random_bytes(1000), "a.mp4");
    served.archive(2, REL_B, &random_bytes(1000), "b.mp4");
    served
}

async fn status(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Correctly signed, but its header demands an extension we do not implement.
fn with_crit(claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.crit = Some(vec!["x-ext".into()]);
    header.extras.insert("x-ext", true);
    let key = jsonwebtoken::EncodingKey::from_secret(common::TUNNEL_SECRET.as_bytes());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn every_token_failure_is_401() {
    let served = two_files().await;
    let secret = common::TUNNEL_SECRET;
    let good = json!({"media_id": 1, "user_id": 7, "exp": at(3600)});
    let alg_none = forged(&json!({"alg": "none", "typ": "JWT"}), &good);
    let cases = [
        ("missing", String::new()),
        ("garbage", "token=not.a.jwt".into()),
        ("empty", "token=".into()),
        (
            "bad signature",
            format!(
                "token={}",
                hs(Algorithm::HS256, "another-secret-0123456789abcdef-0123", &good)
            ),
        ),
        ("alg none", format!("token={alg_none}")),
        (
            "alg none unsigned",
            format!("token={}.", alg_none.rsplit_once('.').unwrap().0),
        ),
        ("HS512", format!("token={}", hs(Algorithm::HS512, secret, &good))),
        (
            "RS256 header",
            format!("token={}", forged(&json!({"alg": "RS256"}), &good)),
        ),
        (
            "expired",
            format!(
                "token={}",
                hs(Algorithm::HS256, secret, &json!({"media_id": 1, "exp": at(-120)}))
            ),
        ),
        (
            "nbf ahead",
            format!(
                "token={}",
                hs(
                    Algorithm::HS256,
                    secret,
                    &json!({"media_id": 1, "exp": at(3600), "nbf": at(600)})
                )
            ),
        ),
        (
            "no exp",
            format!("token={}", hs(Algorithm::HS256, secret, &json!({"media_id": 1}))),
        ),
        (
            "no media",
            format!("token={}", hs(Algorithm::HS256, secret, &json!({"exp": at(3600)}))),
        ),
        ("crit extension", format!("token={}", with_crit(&good))),
    ];
    for (what, query) in cases {
        let resp = reqwest::get(served.url(&format!("/{REL_A}?{query}"))).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{what}");
        assert!(resp.headers().contains_key("www-authenticate"), "{what}");
    }
    // Without a token, a path that does not exist looks the same: no oracle at all.
    assert_eq!(status(&served.url("/2026/03/nothing.mp4")).await.0, 401);
    let ok = hs(
        Algorithm::HS256,
        secret,
        &json!({"media_id": 1, "exp": at(-10), "nbf": at(10)}),
    );
    let (code, _) = status(&served.url(&format!("/{REL_A}?token={ok}"))).await;
    assert_eq!(code, 200, "exp and nbf within JWT_LEEWAY");
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let rig = Rig::new().await;
    let env = [("JWT_ISSUER", "backend"), ("JWT_AUDIENCE", "tunnel")];
    let served = Served::with(rig, &env, Limits::default()).await;
    served.archive(1, REL_A, b"hello", "a.mp4");
    let claims = |extra: Value| {
        let mut c = json!({"media_id": 1, "exp": at(3600)});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        served.url(&format!(
            "/{REL_A}?token={}",
            hs(Algorithm::HS256, common::TUNNEL_SECRET, &c)
        ))
    };
    assert_eq!(
        status(&claims(json!({"iss": "backend", "aud": ["tunnel"]}))).await.0,
        200
    );
    assert_eq!(status(&served.link(1, REL_A)).await.0, 200, "sign() adds iss and aud");
    for bad in [
        json!({"iss": "evil", "aud": "tunnel"}),
        json!({"aud": "tunnel"}),
        json!({"iss": "backend", "aud": "other"}),
        json!({"iss": "backend"}),
    ] {
        assert_eq!(status(&claims(bad.clone())).await.0, 401, "{bad}");
    }
}

#[tokio::test]
async fn a_token_for_another_media_looks_like_a_missing_path() {
    let served = two_files().await;
    let other = status(&served.link(1, REL_B)).await;
    let missing = status(&served.link(1, "2026/03/9-nothing.mp4")).await;
    assert_eq!(other.0, 404);
    assert_eq!(other, missing, "same status and body");
    assert_eq!(status(&served.link(2, REL_B)).await.0, 200);
}

#[tokio::test]
async fn traversal_attempts_are_404() {
    let served = two_files().await;
    let outside = served.rig.dir.path().join("secret.txt");
    std::fs::write(&outside, "outside the archive").unwrap();
    // Even a ledger entry pointing into the temp directory is not served.
    served.archive(3, ".r2-sync-tmp/3.part", b"partial", "p.mp4");
    let t1 = served.token(1);
    for target in [
        "/../secret.txt".to_owned(),
        "/2026/../../secret.txt".into(),
        "/%2e%2e/secret.txt".into(),
        "/2026/%2E%2E/%2e%2e/secret.txt".into(),
        "/2026%2f03%2f1-a.mp4".into(),
        "/%2F2026/03/1-a.mp4".into(),
        "/2026%5c03%5c1-a.mp4".into(),
        "/2026\\03\\1-a.mp4".into(),
        "//2026/03/1-a.mp4".into(),
        "/2026//03/1-a.mp4".into(),
        format!("/{}", outside.display()),
        format!("/{}", outside.display().to_string().replace('/', "%2F")),
        "/2026/03/1-a.mp4%00".into(),
        "/2026/03/1-a.mp4%00.txt".into(),
        "/2026/./03/1-a.mp4".into(),
        "/.r2-sync-tmp/3.part".into(),
        "/%2er2-sync-tmp/3.part".into(),
        "/".into(),
        "/2026/03/".into(),
    ] {
        let token = if target.contains("3.part") {
            served.token(3)
        } else {
            t1.clone()
        };
        let (code, answer) = raw_get(served.files, &format!("{target}?token={token}")).await;
        assert_eq!(code, 404, "{target}: {answer}");
        assert!(!answer.contains("outside the archive"));
    }
    let (code, _) = raw_get(served.files, &format!("/{REL_A}?token={t1}")).await;
    assert_eq!(code, 200, "the real path still works");
}

#[tokio::test]
async fn symlinks_are_never_followed() {
    let served = two_files().await;
    let outside = served.rig.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x.mp4"), "outside the archive").unwrap();
    let month = served.rig.archive_dir().join("2026/03");
    std::os::unix::fs::symlink(outside.join("x.mp4"), month.join("5-link.mp4")).unwrap();
    std::os::unix::fs::symlink(&outside, served.rig.archive_dir().join("2025")).unwrap();
    server_support::record(&served.ledger, 5, "2026/03/5-link.mp4", Stage::Done, "l.mp4");
    server_support::record(&served.ledger, 6, "2025/x.mp4", Stage::Done, "x.mp4");
    for (id, rel) in [(5, "2026/03/5-link.mp4"), (6, "2025/x.mp4")] {
        let (code, body) = status(&served.link(id, rel)).await;
        assert_eq!(code, 404, "{rel}");
        assert!(!body.contains("outside the archive"));
    }
}

#[tokio::test]
async fn only_archived_stages_are_served() {
    let served = Served::new().await;
    for (id, stage) in [
        (1, Stage::Downloading),
        (2, Stage::Shadowed),
        (3, Stage::Archived),
        (4, Stage::Recorded),
    ] {
        let rel = format!("2026/03/{id}-f.mp4");
        server_support::archive(&served.rig, &served.ledger, id, &rel, b"data", stage, "f.mp4");
        let expected = if stage.has_archived_file() { 200 } else { 404 };
        assert_eq!(status(&served.link(id, &rel)).await.0, expected, "{stage}");
    }
}

#[tokio::test]
async fn postgres_knows_files_archived_before_the_ledger() {
    let served = Served::new().await;
    let id = served
        .rig
        .insert_media(&NewMedia::approved("uploads/old.mp4", "old clip.mp4"))
        .await;
    let rel = format!("2025/01/{id}-old.mp4");
    let client = served.rig.db.client().await;
    client
        .execute(
            "UPDATE media SET status = 'archived', archive_path = $2 WHERE id = $1",
            &[&id, &rel],
        )
        .await
        .unwrap();
    let bytes = random_bytes(5000);
    let dest = served.rig.archive_dir().join(&rel);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &bytes).unwrap();
    let resp = reqwest::get(served.link(id as u64, &rel)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("old clip.mp4"));
    assert!(resp.bytes().await.unwrap() == bytes);
    assert_eq!(
        status(&served.link(id as u64 + 1, &rel)).await.0,
        404,
        "another media's token"
    );
}

#[tokio::test]
async fn access_lines_have_the_fields_and_never_the_token() {
    let served = two_files().await;
    let token = served.token(1);
    let client = reqwest::Client::new();
    let url = served.url(&format!("/{REL_A}?token={token}"));
    let resp = client
        .get(&url)
        .header("range", "bytes=0-9")
        .header("cf-connecting-ip", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().len(), 10);
    assert_eq!(
        status(&served.url(&format!("/{REL_A}?token=bogus.{token}"))).await.0,
        401
    );
    assert_eq!(status(&served.link(1, REL_B)).await.0, 404);

    let lines = served.logs.access(&format!("/{REL_A}"), 2).await;
    let ranged = &lines[0];
    assert_eq!(ranged["method"], "GET");
    assert_eq!(ranged["status"], 206);
    assert_eq!(ranged["bytes"], 10);
    assert_eq!(ranged["range"], "bytes=0-9");
    assert_eq!(ranged["media_id"], 1);
    assert_eq!(ranged["user_id"], 7);
    assert_eq!(ranged["client_ip"], "203.0.113.9");
    assert!(ranged["elapsed_ms"].is_u64());
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["denied"], "malformed");
    assert!(lines[1].get("media_id").is_none(), "unauthorized: no media_id");
    assert_eq!(lines[1]["client_ip"], "127.0.0.1");
    let other = served.logs.access(&format!("/{REL_B}"), 1).await;
    assert_eq!(other[0]["status"], 404);
    assert_eq!(other[0]["media_id"], 1);

    let everything = served.logs.text();
    assert!(!everything.contains(&token), "a token leaked into the logs");
    assert!(!everything.contains("token="), "a query string leaked into the logs");
    assert!(!everything.contains(common::TUNNEL_SECRET));
}

async fn get_with(url: &str, authorization: Option<&str>) -> (u16, Option<String>, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let resp = req.send().await.unwrap();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), challenge, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn bearer_header_or_query_token_and_rfc_6750_challenges() {
    let served = Served::new().await;
    let bytes = random_bytes(100);
    served.archive(1, REL_A, &bytes, "a.mp4");
    let (good, other) = (served.token(1), served.token(2));
    let bare = served.url(&format!("/{REL_A}"));
    let with_query = |t: &str| served.url(&format!("/{REL_A}?token={t}"));

    // No token at all: a challenge without an error code (RFC 6750 §3.1).
    let (code, challenge, _) = get_with(&bare, None).await;
    assert_eq!((code, challenge.as_deref()), (401, Some("Bearer realm=\"r2-sync\"")));
    let (code, challenge, _) = get_with(&bare, Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!((code, challenge.as_deref()), (401, Some("Bearer realm=\"r2-sync\"")));
    // A bad token, by either method: invalid_token.
    let invalid = Some("Bearer realm=\"r2-sync\", error=\"invalid_token\"");
    assert_eq!(get_with(&with_query("x.y.z"), None).await.1.as_deref(), invalid);
    let (code, challenge, _) = get_with(&bare, Some("Bearer x.y.z")).await;
    assert_eq!((code, challenge.as_deref()), (401, invalid));

    // The header works like the query parameter; the scheme is case-insensitive.
    for value in [format!("Bearer {good}"), format!("bearer  {good}")] {
        let (code, _, body) = get_with(&bare, Some(&value)).await;
        assert_eq!(code, 200, "{value}");
        assert!(body == bytes);
    }
    let (code, _, _) = get_with(&with_query(&good), Some(&format!("Bearer {good}"))).await;
    assert_eq!(code, 200, "the same token both ways is one token");
    let (code, _, _) = get_with(&with_query(&good), Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(code, 200, "other schemes carry no bearer token");

    // Two different tokens: RFC 6750 §2 forbids more than one method, 400 invalid_request.
    let conflict = Some("Bearer realm=\"r2-sync\", error=\"invalid_request\"");
    for (query, header) in [(&good, &other), (&other, &good), (&good, &"x.y.z".to_owned())] {
        let (code, challenge, _) = get_with(&with_query(query), Some(&format!("Bearer {header}"))).await;
        assert_eq!((code, challenge.as_deref()), (400, conflict));
    }
    let lines = served.logs.access(&format!("/{REL_A}"), 11).await;
    assert_eq!(lines.len(), 11);
    assert_eq!(lines.last().unwrap()["denied"], "invalid_request");
    assert_eq!(lines[0]["denied"], "missing");
    let everything = served.logs.text();
    assert!(
        !everything.contains(&good) && !everything.contains(&other),
        "a token leaked into the logs"
    );
}

/// The README's promise: the method is judged before the token, the same for every path,
/// so a 405 says nothing about what exists.
#[tokio::test]
async fn other_methods_are_405_on_every_path_with_or_without_a_token() {
    let served = two_files().await;
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for url in [
        served.url(&format!("/{REL_A}")),
        served.url("/2026/03/nothing.mp4"),
        served.link(1, REL_A),
        served.link(1, "2026/03/nothing.mp4"),
    ] {
        let resp = client.delete(&url).send().await.unwrap();
        let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        answers.push((resp.status().as_u16(), allow, resp.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, 405);
    assert_eq!(answers[0].1.as_deref(), Some("GET, HEAD"));
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
}
