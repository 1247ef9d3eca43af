//! The bucket (Cloudflare R2, or any S3-compatible server): rust-s3 with a custom endpoint,
//! path-style addressing and region `auto`, exactly as R2 wants it.

use std::time::Duration;

use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};
use thiserror::Error;
use tokio::io::AsyncWrite;

use crate::config::R2Config;

/// Timeout for small requests (HEAD, DELETE, LIST). Downloads have a stall watchdog instead,
/// since a multi-GB transfer may legitimately take an hour.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("bucket: invalid settings: {0}")]
    Setup(String),
    #[error("object {key:?} not found in the bucket")]
    NotFound { key: String },
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
            StorageError::Unreachable { .. } => true,
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
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("bucket", &self.bucket.name)
            .finish_non_exhaustive()
    }
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
        let bucket = Bucket::new(&cfg.bucket, region, creds)
            .map_err(|e| StorageError::Setup(e.to_string()))?
            .with_path_style();
        let control = bucket
            .with_request_timeout(CONTROL_TIMEOUT)
            .map_err(|e| StorageError::Setup(e.to_string()))?;
        Ok(Self { bucket, control })
    }

    pub fn name(&self) -> &str {
        &self.bucket.name
    }

    fn classify(op: &'static str, key: &str, err: S3Error) -> StorageError {
        let key = key.to_owned();
        match err {
            S3Error::HttpFailWithBody(404, _) => StorageError::NotFound { key },
            S3Error::HttpFailWithBody(status, body) => {
                let body: String = body.chars().take(300).collect();
                StorageError::Refused { op, key, status, body }
            }
            source => StorageError::Unreachable { op, key, source },
        }
    }

    pub async fn head(&self, key: &str) -> Result<ObjectInfo, StorageError> {
        let (head, _) = self
            .control
            .head_object(key)
            .await
            .map_err(|e| Self::classify("HEAD", key, e))?;
        let size = head
            .content_length
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| StorageError::Refused {
                op: "HEAD",
                key: key.to_owned(),
                status: 200,
                body: "response has no Content-Length".into(),
            })?;
        Ok(ObjectInfo {
            size,
            etag: head.e_tag.as_deref().map(normalize_etag).unwrap_or_default(),
            content_type: head.content_type,
        })
    }

    /// Streams the object from byte `start` (to `end` inclusive, or the end) into `writer`,
    /// only if its ETag is still `etag`.
    pub async fn download<W>(
        &self,
        key: &str,
        etag: &str,
        start: u64,
        end: Option<u64>,
        writer: &mut W,
    ) -> Result<(), StorageError>
    where
        W: AsyncWrite + Send + Unpin + ?Sized,
    {
        let mut headers = http::HeaderMap::new();
        let value = format!("\"{etag}\"")
            .parse()
            .map_err(|_| StorageError::Setup(format!("ETag {etag:?} is not a valid header value")))?;
        headers.insert(http::header::IF_MATCH, value);
        let guarded = self
            .bucket
            .with_extra_headers(headers)
            .map_err(|e| StorageError::Setup(e.to_string()))?;
        match guarded.get_object_range_to_writer(key, start, end, writer).await {
            Ok(_) => Ok(()),
            Err(S3Error::HttpFailWithBody(412, _)) => Err(StorageError::Changed {
                key: key.to_owned(),
                etag: etag.to_owned(),
            }),
            Err(S3Error::Io(source)) => Err(StorageError::Local {
                key: key.to_owned(),
                source,
            }),
            Err(e) => Err(Self::classify("GET", key, e)),
        }
    }

    /// Deletes the object. Deleting one that is already gone succeeds (S3 semantics).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.control.delete_object(key).await {
            Ok(_) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(Self::classify("DELETE", key, e)),
        }
    }

    /// Uploads a small object (tests, demo). The pipeline never uploads.
    pub async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), StorageError> {
        self.control
            .put_object_with_content_type(key, body, content_type)
            .await
            .map(|_| ())
            .map_err(|e| Self::classify("PUT", key, e))
    }

    /// A cheap signed request proving the bucket is reachable and the keys are accepted.
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
}
