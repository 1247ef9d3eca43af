//! The file server in-process, through a real HTTP client: downloads, RFC 9110 ranges,
//! conditional requests and HEAD, against a real archive and ledger.

use crate::common;
use crate::server_support;

use common::media;
use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;
use server_support::Served;

const REL: &str = "2026/03/1-clip.mp4";
const ORIGINAL: &str = "Ünïcødé \"clip\" 1.mp4";

async fn with_video() -> (Served, Vec<u8>) {
    let served = Served::new().await;
    let video = media::video(served.rig.dir.path(), "clip.mp4", 2);
    let bytes = std::fs::read(video).unwrap();
    served.archive(1, REL, &bytes, ORIGINAL);
    (served, bytes)
}

async fn get(url: &str, headers: &[(header::HeaderName, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn text(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(&name)
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn downloads_are_byte_identical_with_download_headers() {
    let (served, video) = with_video().await;
    let big = server_support::random_bytes(3 * 1024 * 1024 + 17);
    served.archive(2, "2026/03/2-big.bin", &big, "big.bin");

    let (status, h, body) = get(&served.link(1, REL), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == video, "video differs ({} vs {} bytes)", body.len(), video.len());
    assert_eq!(text(&h, header::CONTENT_LENGTH), video.len().to_string());
    assert_eq!(text(&h, header::CONTENT_TYPE), "video/mp4");
    assert_eq!(text(&h, header::ACCEPT_RANGES), "bytes");
    assert_eq!(text(&h, header::CACHE_CONTROL), "private");
    assert_eq!(text(&h, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert!(text(&h, header::ETAG).starts_with('"'));
    httpdate::parse_http_date(text(&h, header::LAST_MODIFIED)).unwrap();
    assert_eq!(
        text(&h, header::CONTENT_DISPOSITION),
        "inline; filename=\"_n_c_d_ _clip_ 1.mp4\"; \
         filename*=UTF-8''%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20_clip_%201.mp4"
    );

    let (status, h, body) = get(&served.link(2, "2026/03/2-big.bin"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == big, "several chunks stream in order");
    assert_eq!(text(&h, header::CONTENT_TYPE), "video/mp4", "the ledger's type wins");
}

#[tokio::test]
async fn each_range_form_answers_206_with_content_range() {
    let (served, video) = with_video().await;
    let len = video.len();
    let url = served.link(1, REL);
    let cases = [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len - 1),
        ("bytes=-500", len - 500, len - 1),
        ("bytes=10-999999999", 10, len - 1),
        ("bytes=0-9,5-20", 0, 20),
    ];
    for (range, start, end) in cases {
        let (status, h, body) = get(&url, &[(header::RANGE, range)]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            text(&h, header::CONTENT_RANGE),
            format!("bytes {start}-{end}/{len}"),
            "{range}"
        );
        assert_eq!(text(&h, header::CONTENT_LENGTH), (end - start + 1).to_string());
        assert!(body == video[start..=end], "{range}: wrong bytes");
    }

    for range in [
        format!("bytes={len}-"),
        "bytes=-0".to_owned(),
        format!("bytes={}-{}", len + 5, len + 9),
    ] {
        let (status, h, body) = get(&url, &[(header::RANGE, &range)]).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(text(&h, header::CONTENT_RANGE), format!("bytes */{len}"));
        assert!(body.is_empty());
    }

    for ignored in ["bytes=0-0,-1", "bytes=9-3", "pages=1-2", "bytes=abc"] {
        let (status, h, body) = get(&url, &[(header::RANGE, ignored)]).await;
        assert_eq!(status, StatusCode::OK, "{ignored}: whole file");
        assert!(h.get(header::CONTENT_RANGE).is_none());
        assert_eq!(body.len(), len);
    }
}

#[tokio::test]
async fn conditional_requests_answer_304_412_and_steer_if_range() {
    let (served, video) = with_video().await;
    let url = served.link(1, REL);
    let (_, h, _) = get(&url, &[]).await;
    let etag = text(&h, header::ETAG).to_owned();
    let modified = text(&h, header::LAST_MODIFIED).to_owned();

    for (name, value) in [
        (header::IF_NONE_MATCH, etag.as_str()),
        (header::IF_NONE_MATCH, &format!("\"nope\", W/{etag}")),
        (header::IF_NONE_MATCH, "*"),
        (header::IF_MODIFIED_SINCE, modified.as_str()),
    ] {
        let (status, h, body) = get(&url, &[(name.clone(), value)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{name}: {value}");
        assert_eq!(text(&h, header::ETAG), etag);
        assert!(body.is_empty());
    }
    let (status, _, body) = get(&url, &[(header::IF_NONE_MATCH, "\"stale\"")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), video.len());
    let long_ago = "Mon, 01 Jan 2001 00:00:00 GMT";
    let (status, _, _) = get(&url, &[(header::IF_MODIFIED_SINCE, long_ago)]).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, _) = get(&url, &[(header::IF_MATCH, "\"stale\"")]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _, _) = get(&url, &[(header::IF_UNMODIFIED_SINCE, long_ago)]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    // If-Range: a resumed download continues only if the file is the one it started with.
    for (validator, expected) in [
        (etag.as_str(), StatusCode::PARTIAL_CONTENT),
        (modified.as_str(), StatusCode::PARTIAL_CONTENT),
        ("\"stale\"", StatusCode::OK),
        (long_ago, StatusCode::OK),
    ] {
        let headers = [(header::RANGE, "bytes=100-"), (header::IF_RANGE, validator)];
        let (status, _, body) = get(&url, &headers).await;
        assert_eq!(status, expected, "If-Range: {validator}");
        let start = if expected == StatusCode::OK { 0 } else { 100 };
        assert!(body == video[start..], "If-Range {validator}: wrong bytes");
    }
}

#[tokio::test]
async fn head_answers_the_same_headers_without_a_body() {
    let (served, video) = with_video().await;
    let client = reqwest::Client::new();
    let url = served.link(1, REL);
    let get = client.get(&url).send().await.unwrap();
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        header::ETAG,
        header::LAST_MODIFIED,
        header::ACCEPT_RANGES,
        header::CACHE_CONTROL,
    ] {
        assert_eq!(head.headers().get(&name), get.headers().get(&name), "{name}");
    }
    assert_eq!(text(head.headers(), header::CONTENT_LENGTH), video.len().to_string());
    assert!(head.bytes().await.unwrap().is_empty());

    let ranged = client
        .head(&url)
        .header(header::RANGE, "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(text(ranged.headers(), header::CONTENT_LENGTH), "10");
    assert!(ranged.bytes().await.unwrap().is_empty());

    let post = client.post(&url).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(text(post.headers(), header::ALLOW), "GET, HEAD");
}

/// A ledger written by the version before the ledger's format 2 (the state crate's fixture)
/// is migrated when the server opens it, and its finished files are served from it: the
/// database knows none of them, so only the migrated ledger can answer.
#[tokio::test]
async fn files_in_a_ledger_written_by_the_previous_format_are_served_after_migration() {
    let rig = common::Rig::new().await;
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/state/tests/fixtures/ledger-v1.redb");
    std::fs::copy(fixture, server_support::ledger_path(&rig)).unwrap();
    let rel = "2026/11/7-clip 7.mp4";
    let bytes = server_support::random_bytes(7000);
    let dest = rig.archive_dir().join(rel);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &bytes).unwrap();
    let served = Served::with(rig, &[], r2_sync::server::Limits::default()).await;

    let (status, h, body) = get(&served.link(7, rel), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == bytes);
    assert_eq!(text(&h, header::CONTENT_TYPE), "video/mp4");
    assert!(
        text(&h, header::CONTENT_DISPOSITION).contains("filename=\"clip 7.mp4\""),
        "{h:?}"
    );
    // A file the old ledger had in flight is not served.
    let (status, _, _) = get(&served.link(21, "2026/12/21-clip 21.mp4"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
