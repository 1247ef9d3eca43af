//! The bucket (Cloudflare R2, or any S3-compatible server): rust-s3 with a custom endpoint,
//! path-style addressing and region `auto`, exactly as R2 wants it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::serde_types::{DeleteObjectsResult, ObjectIdentifier};
use s3::{Bucket, Region};
use thiserror::Error;
use tokio::io::AsyncWrite;

use crate::coalesce::Coalescer;
use crate::config::R2Config;

mod breaker;
mod key;
pub use breaker::{Breaker, TRIP_AFTER};
pub use key::{KeyError, ObjectKey, MAX_KEY_BYTES};

/// Timeout for small requests (HEAD, DELETE, LIST, a small object's GET), answer included.
/// Test builds give up sooner so that dead-bucket scenarios run in seconds.
#[cfg(not(feature = "fault-injection"))]
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
#[cfg(feature = "fault-injection")]
const CONTROL_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("bucket: invalid settings: {0}")]
    Setup(String),
    #[error("object {key:?} not found in the bucket")]
    NotFound { key: String },
    /// The bucket itself is missing: a setting is wrong, and no object's fate may be decided.
    #[error(
        "the bucket does not exist (S3 NoSuchBucket during {op}): R2_BUCKET must name an existing \
         bucket, and R2_ENDPOINT be the account's endpoint without the bucket's name"
    )]
    NoSuchBucket { op: &'static str },
    #[error("object {key:?} changed in the bucket (ETag no longer {etag})")]
    Changed { key: String, etag: String },
    #[error("bucket refused {op} of {key:?}: HTTP {status}: {body}")]
    Refused {
        op: &'static str,
        key: String,
        status: u16,
        body: String,
    },
    #[error("bucket unreachable during {op} of {key:?}: {source}")]
    Unreachable {
        op: &'static str,
        key: String,
        #[source]
        source: S3Error,
    },
    /// Not sent: the last requests of this pass got no answer (see [`Breaker`]).
    #[error(
        "bucket unreachable: the last {TRIP_AFTER} requests got no answer, so {op} of {key:?} was not sent \
         and waits for the next pass"
    )]
    Down { op: &'static str, key: String },
    #[error("writing {key:?} to disk failed: {source}")]
    Local {
        key: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Worth retrying later (network trouble, 5xx, throttling), as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Unreachable { .. } | StorageError::Down { .. } => true,
            StorageError::Refused { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// What the bucket says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// Without the surrounding quotes.
    pub etag: String,
    pub content_type: Option<String>,
}

#[derive(Clone)]
pub struct Storage {
    bucket: Box<Bucket>,
    control: Box<Bucket>,
    deletes: Arc<Coalescer<ObjectKey, Result<(), StorageError>>>,
    breaker: Arc<Breaker>,
}

/// Keys per DeleteObjects request (the S3 limit).
const MAX_DELETE_BATCH: usize = 1000;

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("bucket", &self.bucket.name)
            .finish_non_exhaustive()
    }
}

/// What a DeleteObjects answer says of `key`: deleted (or already gone), refused, or nothing.
fn delete_outcome(result: &DeleteObjectsResult, key: &ObjectKey) -> Option<Result<(), StorageError>> {
    let key = key.as_str();
    if result.deleted.iter().any(|d| d.key == key) {
        return Some(Ok(()));
    }
    let error = result.errors.iter().find(|e| e.key == key)?;
    let status = match error.code.as_str() {
        "NoSuchKey" => return Some(Ok(())),
        "AccessDenied" => 403,
        "SlowDown" | "ServiceUnavailable" | "InternalError" => 503,
        _ => 400,
    };
    Some(Err(StorageError::Refused {
        op: "DELETE",
        key: key.to_owned(),
        status,
        body: format!("{}: {}", error.code, error.message),
    }))
}

/// The `If-Match` value guarding a download: the ETag as a strong entity-tag. One with
/// characters an entity-tag cannot hold (RFC 9110 §8.8.3: `"`, spaces, controls) is refused,
/// since a server may ignore a malformed condition and send a changed object's bytes.
fn if_match(etag: &str) -> Result<http::HeaderValue, StorageError> {
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b);
    let invalid = || StorageError::Setup(format!("the bucket's ETag {etag:?} is not a valid entity-tag"));
    if !etag.bytes().all(etagc) {
        return Err(invalid());
    }
    format!("\"{etag}\"").parse().map_err(|_| invalid())
}

/// `"abc"` → `abc`; also drops a weak `W/` prefix.
pub fn normalize_etag(raw: &str) -> String {
    raw.trim().trim_start_matches("W/").trim_matches('"').to_owned()
}

impl Storage {
    pub fn new(cfg: &R2Config) -> Result<Self, StorageError> {
        let region = Region::Custom {
            region: cfg.region.clone(),
            endpoint: cfg.endpoint.clone(),
        };
        let creds = Credentials::new(Some(&cfg.access_key), Some(cfg.secret_key.expose()), None, None, None)
            .map_err(|e| StorageError::Setup(e.to_string()))?;
        // rust-s3 retries a read once by itself, after the whole timeout: on a bucket that
        // never answers every request would cost two. The pipeline retries (within a pass,
        // then across passes with backoff), knowing what a retry costs.
        s3::set_retries(0);
        let mut bucket = Bucket::new(&cfg.bucket, region, creds)
            .map_err(|e| StorageError::Setup(e.to_string()))?
            .with_path_style();
        let control = bucket
            .with_request_timeout(CONTROL_TIMEOUT)
            .map_err(|e| StorageError::Setup(e.to_string()))?;
        // rust-s3's default (60 s) bounds a request with its whole body: a segment slower
        // than that (64 MiB below ~9 Mbit/s) would be cut and fetched again forever. The
        // download's stall watchdog bounds a transfer that stops moving instead.
        bucket.set_request_timeout(None);
        Ok(Self {
            bucket,
            control,
            deletes: Arc::default(),
            breaker: Arc::default(),
        })
    }

    /// Lets requests through again: a new pass tries the bucket afresh.
    pub fn reset_breaker(&self) {
        self.breaker.reset();
    }

    /// Whether this pass has given up on the bucket (see [`Breaker`]).
    pub fn is_down(&self) -> bool {
        self.breaker.is_open()
    }

    /// Sends `request` unless the bucket is down, and tells the breaker whether it answered.
    async fn guarded<T>(
        &self,
        op: &'static str,
        key: &str,
        request: impl std::future::Future<Output = Result<T, S3Error>>,
    ) -> Result<Result<T, S3Error>, StorageError> {
        if self.breaker.is_open() {
            return Err(StorageError::Down {
                op,
                key: key.to_owned(),
            });
        }
        let result = request.await;
        match &result {
            Ok(_) | Err(S3Error::HttpFailWithBody(..) | S3Error::HttpFail) => self.breaker.answered(),
            Err(S3Error::Reqwest(_)) => {
                self.breaker.unanswered();
            }
            Err(_) => {}
        }
        Ok(result)
    }

    pub fn name(&self) -> &str {
        &self.bucket.name
    }

    fn classify(op: &'static str, key: &str, err: S3Error) -> StorageError {
        let key = key.to_owned();
        match err {
            S3Error::HttpFailWithBody(404, body) if body.contains("<Code>NoSuchBucket</Code>") => {
                StorageError::NoSuchBucket { op }
            }
            S3Error::HttpFailWithBody(404, _) => StorageError::NotFound { key },
            S3Error::HttpFailWithBody(status, body) => {
                let body: String = body.chars().take(300).collect();
                StorageError::Refused { op, key, status, body }
            }
            source => StorageError::Unreachable { op, key, source },
        }
    }

    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, StorageError> {
        let (head, _) = match self
            .guarded("HEAD", key.as_str(), self.control.head_object(key.as_str()))
            .await?
        {
            Ok(answer) => answer,
            Err(e) => return Err(self.head_error(key, e).await),
        };
        let size = head
            .content_length
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| StorageError::Refused {
                op: "HEAD",
                key: key.as_str().to_owned(),
                status: 200,
                body: "response has no Content-Length".into(),
            })?;
        Ok(ObjectInfo {
            size,
            etag: head.e_tag.as_deref().map(normalize_etag).unwrap_or_default(),
            content_type: head.content_type,
        })
    }

    /// The object's first `len` bytes (`len` > 0) and what a HEAD would say, in one request:
    /// a small object needs no other. An empty object, which has no range to ask for, is
    /// answered by a HEAD.
    pub async fn get_start(&self, key: &ObjectKey, len: u64) -> Result<(ObjectInfo, Bytes), StorageError> {
        let range = self.control.get_object_range(key.as_str(), 0, Some(len.max(1) - 1));
        let response = match self.guarded("GET", key.as_str(), range).await? {
            Ok(response) => response,
            Err(S3Error::HttpFailWithBody(416, _)) => return Ok((self.head(key).await?, Bytes::new())),
            Err(e) => return Err(Self::classify("GET", key.as_str(), e)),
        };
        let headers = response.headers();
        let body = response.into_bytes();
        // 206: "bytes 0-N/TOTAL"; a server that ignored the range sent it all (200).
        let size = headers
            .get("content-range")
            .and_then(|range| range.rsplit_once('/'))
            .and_then(|(_, total)| total.trim().parse().ok())
            .unwrap_or(body.len() as u64);
        let info = ObjectInfo {
            size,
            etag: headers.get("etag").map(|e| normalize_etag(e)).unwrap_or_default(),
            content_type: headers.get("content-type").cloned(),
        };
        Ok((info, body))
    }

    /// Streams the object from byte `start` (to `end` inclusive, or the end) into `writer`,
    /// only if its ETag is still `etag`.
    pub async fn download<W>(
        &self,
        key: &ObjectKey,
        etag: &str,
        start: u64,
        end: Option<u64>,
        writer: &mut W,
    ) -> Result<(), StorageError>
    where
        W: AsyncWrite + Send + Unpin + ?Sized,
    {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::IF_MATCH, if_match(etag)?);
        let guarded = self
            .bucket
            .with_extra_headers(headers)
            .map_err(|e| StorageError::Setup(e.to_string()))?;
        let get = guarded.get_object_range_to_writer(key.as_str(), start, end, writer);
        match self.guarded("GET", key.as_str(), get).await? {
            Ok(_) => Ok(()),
            Err(S3Error::HttpFailWithBody(412, _)) => Err(StorageError::Changed {
                key: key.as_str().to_owned(),
                etag: etag.to_owned(),
            }),
            Err(S3Error::Io(source)) => Err(StorageError::Local {
                key: key.as_str().to_owned(),
                source,
            }),
            Err(e) => Err(Self::classify("GET", key.as_str(), e)),
        }
    }

    /// Deletes the object. Deleting one that is already gone succeeds (S3 semantics).
    /// Deletes asked for while another is in flight share the next request (DeleteObjects):
    /// files finishing together cost the bucket one request, not one each.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let batch = |keys: Vec<ObjectKey>| async move {
            let mut answers = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(MAX_DELETE_BATCH) {
                answers.extend(self.delete_batch(chunk).await);
            }
            answers
        };
        self.deletes
            .submit(key.clone(), batch)
            .await
            .unwrap_or_else(|| Err(StorageError::Setup("a delete batch was dropped".into())))
    }

    /// Sends one DeleteObjects request for the keys of `batch` that XML carries unchanged and
    /// answers each key; keys it does not settle (and every key, if the request fails) are
    /// deleted one by one.
    async fn delete_batch(&self, keys: &[ObjectKey]) -> Vec<Result<(), StorageError>> {
        let ids: Vec<ObjectIdentifier> = keys
            .iter()
            .filter(|key| key.fits_xml_batch())
            .map(|key| ObjectIdentifier::new(key.as_str()))
            .collect();
        let result = match ids.len() {
            0 | 1 => None,
            _ => match self.guarded("DELETE", "", self.control.delete_objects(ids)).await {
                Ok(answer) => answer.ok(),
                Err(_) => {
                    let down = |key: &ObjectKey| StorageError::Down {
                        op: "DELETE",
                        key: key.as_str().to_owned(),
                    };
                    return keys.iter().map(|key| Err(down(key))).collect();
                }
            },
        };
        let mut answers = Vec::with_capacity(keys.len());
        for key in keys {
            let settled = result
                .as_ref()
                .filter(|_| key.fits_xml_batch())
                .and_then(|r| delete_outcome(r, key));
            answers.push(match settled {
                Some(outcome) => outcome,
                None => self.delete_one(key).await,
            });
        }
        answers
    }

    async fn delete_one(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self
            .guarded("DELETE", key.as_str(), self.control.delete_object(key.as_str()))
            .await?
        {
            Ok(_) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(Self::classify("DELETE", key.as_str(), e)),
        }
    }

    /// Uploads a small object (tests, demo). The pipeline never uploads.
    pub async fn put(&self, key: &ObjectKey, body: &[u8], content_type: &str) -> Result<(), StorageError> {
        self.control
            .put_object_with_content_type(key.as_str(), body, content_type)
            .await
            .map(|_| ())
            .map_err(|e| Self::classify("PUT", key.as_str(), e))
    }

    /// A cheap signed request proving the bucket is reachable and the keys are accepted.
    /// A 404 to a HEAD has no body to tell a missing object from a missing bucket, and only
    /// the first may fail the media: a one-key LIST tells them apart.
    async fn head_error(&self, key: &ObjectKey, e: S3Error) -> StorageError {
        match Self::classify("HEAD", key.as_str(), e) {
            StorageError::NotFound { key } => match self.ping().await {
                Err(missing @ StorageError::NoSuchBucket { .. }) => missing,
                _ => StorageError::NotFound { key },
            },
            other => other,
        }
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        self.control
            .list_page(String::new(), None, None, None, Some(1))
            .await
            .map(|_| ())
            .map_err(|e| Self::classify("LIST", "", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3::serde_types::{DeleteError, DeletedObject};

    #[test]
    fn etags_lose_quotes_and_weak_prefix() {
        assert_eq!(
            normalize_etag("\"d41d8cd98f00b204e9800998ecf8427e\""),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(normalize_etag("W/\"abc-3\""), "abc-3");
        assert_eq!(normalize_etag("plain"), "plain");
    }

    #[test]
    fn only_network_and_server_errors_are_transient() {
        let refused = |status| StorageError::Refused {
            op: "GET",
            key: "k".into(),
            status,
            body: String::new(),
        };
        assert!(refused(503).is_transient());
        assert!(refused(429).is_transient());
        assert!(!refused(403).is_transient());
        assert!(!StorageError::NotFound { key: "k".into() }.is_transient());
        assert!(!StorageError::Changed {
            key: "k".into(),
            etag: "e".into()
        }
        .is_transient());
    }

    fn answer(deleted: &[&str], errors: &[(&str, &str)]) -> DeleteObjectsResult {
        DeleteObjectsResult {
            deleted: deleted
                .iter()
                .map(|key| DeletedObject {
                    key: (*key).into(),
                    version_id: None,
                    delete_marker: None,
                    delete_marker_version_id: None,
                })
                .collect(),
            errors: errors
                .iter()
                .map(|(key, code)| DeleteError {
                    key: (*key).into(),
                    code: (*code).into(),
                    message: "no".into(),
                    version_id: None,
                })
                .collect(),
        }
    }

    #[test]
    fn if_match_carries_only_a_valid_entity_tag() {
        assert_eq!(
            if_match("d41d8cd98f00b204e9800998ecf8427e-3").unwrap(),
            "\"d41d8cd98f00b204e9800998ecf8427e-3\""
        );
        for bad in ["a\"b", "a b", "a\r\nX-Evil: 1", "é"] {
            assert!(if_match(bad).is_err(), "{bad:?}");
        }
    }

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    #[test]
    fn batch_answers_settle_each_key_or_leave_it_to_a_single_delete() {
        let r = answer(
            &["a"],
            &[("gone", "NoSuchKey"), ("busy", "SlowDown"), ("denied", "AccessDenied")],
        );
        assert!(matches!(delete_outcome(&r, &key("a")), Some(Ok(()))));
        assert!(matches!(delete_outcome(&r, &key("gone")), Some(Ok(()))));
        let busy = delete_outcome(&r, &key("busy")).unwrap().unwrap_err();
        assert!(busy.is_transient(), "{busy}");
        let denied = delete_outcome(&r, &key("denied")).unwrap().unwrap_err();
        assert!(
            !denied.is_transient() && denied.to_string().contains("AccessDenied"),
            "{denied}"
        );
        assert!(delete_outcome(&r, &key("unmentioned")).is_none());
    }
}
