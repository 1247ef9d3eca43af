//! Object keys as the bucket must see them: exactly the row's bytes, or refused before any
//! request is built.
//!
//! `r2_key` comes from the database and is untrusted. rust-s3 puts the key into a URL path
//! (percent-encoding every byte but `A-Z a-z 0-9 - . _ ~ /`, dropping one leading `/`) and the
//! `url` crate then resolves `.` and `..` segments, `%2e` spellings included (WHATWG URL),
//! before anything is sent: `../other/x` would address another bucket and `..` the account.
//! No encoding of ours survives that (rust-s3 encodes `%` again), so a key whose path would be
//! reinterpreted is refused here, and the only way to a request is through [`ObjectKey`].
//!
//! Refused although S3 allows them as literal names: `.`/`..` segments (no request can carry
//! them through `url`), and empty segments (a leading, trailing or doubled `/`): rust-s3 drops
//! a leading one, and slash-merging proxies or CDNs in front of a bucket would turn `a//b` into
//! another object's `a/b`. The backend's keys (`uploads/<user>/<uuid>/<name>`) never have them.

use std::fmt;

use thiserror::Error;

/// S3's limit on a key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a row's `r2_key` names no object r2-sync may touch. Always permanent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("r2_key is empty or NULL: it names no object")]
    Empty,
    #[error("r2_key is {len} bytes long; S3 keys are at most {MAX_KEY_BYTES} bytes")]
    TooLong { len: usize },
    #[error("r2_key {lossy:?} is not valid UTF-8, which S3 keys must be")]
    NotUtf8 { lossy: String },
    #[error("r2_key {key:?} has an empty path segment (a leading, trailing or doubled '/'): refused, since it could reach another object's key")]
    EmptySegment { key: String },
    #[error(
        "r2_key {key:?} has a '.' or '..' segment: refused, since URL parsing resolves it to another object's key"
    )]
    DotSegment { key: String },
    #[error("r2_key {key:?} would not reach the bucket unchanged (its request path became {sent:?})")]
    Reinterpreted { key: String, sent: String },
}

/// A key that names exactly one object and reaches the bucket byte for byte. It cannot be
/// empty, so no request built from it can list or delete a bucket.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks `raw` as read from the database (any bytes).
    pub fn from_bytes(raw: &[u8]) -> Result<Self, KeyError> {
        match std::str::from_utf8(raw) {
            Ok(key) => Self::new(key),
            Err(_) => Err(KeyError::NotUtf8 {
                lossy: String::from_utf8_lossy(raw).into_owned(),
            }),
        }
    }

    pub fn new(key: &str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong { len: key.len() });
        }
        let owned = || key.to_owned();
        for segment in key.split('/') {
            match segment {
                "" => return Err(KeyError::EmptySegment { key: owned() }),
                "." | ".." => return Err(KeyError::DotSegment { key: owned() }),
                _ => {}
            }
        }
        // What rust-s3 will send, parsed as the HTTP client will: any change refuses the key.
        let encoded = format!("/{PROBE_BUCKET}/{}", s3::signing::uri_encode(key, false));
        let sent = url::Url::parse(&format!("http://{PROBE_HOST}{encoded}"))
            .map(|url| url.path().to_owned())
            .unwrap_or_default();
        if sent != encoded {
            return Err(KeyError::Reinterpreted { key: owned(), sent });
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the key can travel inside a DeleteObjects XML body and come back unchanged.
    /// XML 1.0 cannot carry most control characters even escaped, parsers turn `\r\n` into
    /// `\n`, and some trim text: such a key could delete a different object in a batch, so it
    /// is deleted by its own request instead.
    pub fn fits_xml_batch(&self) -> bool {
        let key = &self.0;
        let plain = |c: char| !c.is_control() && c != '\u{FFFE}' && c != '\u{FFFF}';
        key.chars().all(plain) && key.trim() == key
    }
}

const PROBE_HOST: &str = "bucket.invalid";
const PROBE_BUCKET: &str = "b";

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ObjectKey {
    /// Quoted and escaped: a key may hold control or invisible characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = KeyError;

    fn try_from(key: &str) -> Result<Self, KeyError> {
        Self::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(key: &str) -> KeyError {
        ObjectKey::new(key).expect_err(key)
    }

    #[test]
    fn keys_that_name_no_object_are_refused() {
        assert_eq!(refused(""), KeyError::Empty);
        for key in ["/", "//", "///a", "/uploads/a.mp4", "uploads/", "uploads//a.mp4"] {
            assert!(matches!(refused(key), KeyError::EmptySegment { .. }), "{key:?}");
        }
        for key in [
            ".",
            "..",
            "../other/secret.wav",
            "uploads/./k/decoy.wav",
            "a/b/..",
            "a/../../x",
        ] {
            assert!(matches!(refused(key), KeyError::DotSegment { .. }), "{key:?}");
        }
        assert_eq!(refused(&"k".repeat(1025)), KeyError::TooLong { len: 1025 });
        assert!(ObjectKey::new(&"k".repeat(1024)).is_ok());
        let not_utf8 = ObjectKey::from_bytes(b"uploads/\xff.mp4").unwrap_err();
        assert!(matches!(not_utf8, KeyError::NotUtf8 { .. }), "{not_utf8}");
    }

    #[test]
    fn literal_names_that_only_look_special_are_kept() {
        for key in [
            "%2e%2e/other/secret.wav",
            "uploads/%2E%2E/x",
            "uploads/.../x",
            "uploads/.hidden",
            "uploads/a..b",
            "uploads\\..\\..\\other",
            "uploads/a?b#c",
            "uploads/a+b c%25d",
            "uploads/été/東京.mp4",
            "uploads/\u{202e}piv.mp4",
            "uploads/tab\there",
        ] {
            let parsed = ObjectKey::new(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert_eq!(parsed.as_str(), key);
        }
    }

    #[test]
    fn every_accepted_key_is_encoded_into_one_path_that_decodes_back_to_it() {
        let key = ObjectKey::new("a b/%2e%2e/?x#y+z\\é").unwrap();
        let encoded = s3::signing::uri_encode(key.as_str(), false);
        assert_eq!(encoded, "a%20b/%252e%252e/%3Fx%23y%2Bz%5C%C3%A9");
        let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
        assert_eq!(decoded, key.as_str());
    }

    #[test]
    fn only_plain_keys_ride_in_a_delete_batch() {
        let fits = |k: &str| ObjectKey::new(k).unwrap().fits_xml_batch();
        assert!(fits("uploads/a & <b>.mp4"));
        assert!(fits("uploads/東京.mp4"));
        assert!(!fits("uploads/a\r\nb"));
        assert!(!fits("uploads/a\u{1}b"));
        assert!(!fits(" uploads/a"));
        assert!(!fits("uploads/a\u{FFFF}"));
    }

    #[test]
    fn display_escapes_what_a_log_line_must_not_carry() {
        let key = ObjectKey::new("a\nb\u{202e}").unwrap();
        assert_eq!(key.to_string(), "\"a\\nb\\u{202e}\"");
    }
}
