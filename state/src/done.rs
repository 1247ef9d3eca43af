//! Finished (`done`) entries, kept compact: a ledger only grows, and after years nearly every
//! entry is one of these. A done entry keeps what serving, `status` and a later audit need:
//! the archive path, size, SHA-256, content type, the uploader's file name and the times.
//! The object key, ETag and transfer bookkeeping are dropped (PostgreSQL's audit row keeps
//! the key and ETag).
//!
//! Stored as one format byte and the fields in postcard (varints, length-prefixed strings).

use serde::{Deserialize, Serialize};

use crate::entry::{Entry, Stage};

/// The first byte of every record; a record with another is refused, not guessed at.
const FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Record {
    archive_path: Option<String>,
    size: u64,
    sha256: Option<[u8; 32]>,
    content_type: Option<String>,
    original_filename: Name,
    error: Option<String>,
    created_at: u64,
    /// `updated_at - created_at`: a few bytes instead of five.
    updated_after: i64,
}

/// The uploader's file name, which the archive's file name (`<id>-<name>`) usually holds
/// already: then it is not stored twice.
#[derive(Serialize, Deserialize)]
enum Name {
    Absent,
    /// The archive file name without its `<id>-` prefix.
    InArchivePath,
    Given(String),
}

impl Name {
    fn of(entry: &Entry) -> Self {
        match &entry.original_filename {
            None => Name::Absent,
            Some(name) if name_in_path(entry.media_id, entry.archive_path.as_deref()) == Some(name.as_str()) => {
                Name::InArchivePath
            }
            Some(name) => Name::Given(name.clone()),
        }
    }

    fn resolve(self, media_id: u64, archive_path: Option<&str>) -> Option<String> {
        match self {
            Name::Absent => None,
            Name::InArchivePath => name_in_path(media_id, archive_path).map(str::to_owned),
            Name::Given(name) => Some(name),
        }
    }
}

fn name_in_path(media_id: u64, archive_path: Option<&str>) -> Option<&str> {
    let file = archive_path?.rsplit('/').next()?;
    file.strip_prefix(media_id.to_string().as_str())?.strip_prefix('-')
}

#[derive(Debug, thiserror::Error)]
pub enum DoneError {
    #[error("record format {0} is unknown (written by a newer r2-sync?)")]
    Format(u8),
    #[error("empty record")]
    Empty,
    #[error(transparent)]
    Decode(#[from] postcard::Error),
}

fn sha256_bytes(hex: Option<&str>) -> Option<[u8; 32]> {
    let hex = hex?;
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn sha256_hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a `done` entry. A SHA-256 that is not 64 hex digits (never written by
/// r2-sync) is kept as it was in the entry's `error`, so that nothing is silently lost.
pub fn encode(entry: &Entry) -> Vec<u8> {
    debug_assert_eq!(entry.stage(), Stage::Done);
    let sha256 = sha256_bytes(entry.sha256.as_deref());
    let odd_sha = entry.sha256.as_deref().filter(|_| sha256.is_none());
    let error = match (odd_sha, &entry.error) {
        (Some(odd), Some(e)) => Some(format!("{e} (sha256 as recorded: {odd})")),
        (Some(odd), None) => Some(format!("sha256 as recorded: {odd}")),
        (None, e) => e.clone(),
    };
    let record = Record {
        archive_path: entry.archive_path.clone(),
        size: entry.size.unwrap_or(entry.bytes_done),
        sha256,
        content_type: entry.content_type.clone(),
        original_filename: Name::of(entry),
        error,
        created_at: entry.created_at,
        updated_after: entry.updated_at as i64 - entry.created_at as i64,
    };
    let mut out = vec![FORMAT];
    out.extend(postcard::to_allocvec(&record).expect("records always serialise"));
    out
}

pub fn decode(media_id: u64, raw: &[u8]) -> Result<Entry, DoneError> {
    let (&format, body) = raw.split_first().ok_or(DoneError::Empty)?;
    if format != FORMAT {
        return Err(DoneError::Format(format));
    }
    let r: Record = postcard::from_bytes(body)?;
    let mut entry = Entry::new(media_id, "");
    entry.set_stage_from_storage(Stage::Done);
    entry.size = Some(r.size);
    entry.bytes_done = r.size;
    entry.original_filename = r.original_filename.resolve(media_id, r.archive_path.as_deref());
    entry.archive_path = r.archive_path;
    entry.sha256 = r.sha256.as_ref().map(sha256_hex);
    entry.content_type = r.content_type;
    entry.error = r.error;
    entry.created_at = r.created_at;
    entry.updated_at = r.created_at.saturating_add_signed(r.updated_after);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> Entry {
        let mut e = Entry::new(
            123_456,
            "uploads/7/0b6e3c1e-9d7a-4f0e-8f55-1d2f3a4b5c6d/holiday clip.mp4",
        );
        e.set_stage_from_storage(Stage::Done);
        e.size = Some(734_003_200);
        e.bytes_done = 734_003_200;
        e.etag = Some("9b2cf535f27731c974343645a3985328-11".into());
        e.archive_path = Some("2026/12/123456-holiday clip.mp4".into());
        e.sha256 = Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into());
        e.content_type = Some("video/mp4".into());
        e.original_filename = Some("holiday clip.mp4".into());
        e
    }

    #[test]
    fn keeps_what_serving_status_and_audit_need_in_a_tenth_of_the_json() {
        let e = done();
        let raw = encode(&e);
        let back = decode(e.media_id, &raw).unwrap();
        assert_eq!(back.stage(), Stage::Done);
        for (field, kept) in [
            ("archive_path", back.archive_path == e.archive_path),
            ("size", back.size == e.size && back.bytes_done == e.bytes_done),
            ("sha256", back.sha256 == e.sha256),
            ("content_type", back.content_type == e.content_type),
            ("original_filename", back.original_filename == e.original_filename),
            (
                "times",
                (back.created_at, back.updated_at) == (e.created_at, e.updated_at),
            ),
        ] {
            assert!(kept, "{field} lost: {back:?}");
        }
        let json = serde_json::to_vec(&e).unwrap().len();
        assert!(raw.len() * 3 < json, "{} bytes stored vs {json} of JSON", raw.len());
        assert!(raw.len() <= 100, "{} bytes", raw.len());
    }

    #[test]
    fn the_uploaders_name_is_kept_whether_or_not_the_archive_path_holds_it() {
        for (name, path) in [
            (Some("holiday clip.mp4"), Some("2026/12/123456-holiday clip.mp4")),
            (Some("other name.mp4"), Some("2026/12/123456-holiday clip.mp4")),
            (Some("a/b:c.mp4"), Some("2026/12/123456-a_b_c.mp4")),
            (Some("x.mp4"), Some("2026/12/99-x.mp4")),
            (Some("x.mp4"), None),
            (None, Some("2026/12/123456-x.mp4")),
        ] {
            let mut e = done();
            e.original_filename = name.map(str::to_owned);
            e.archive_path = path.map(str::to_owned);
            let back = decode(e.media_id, &encode(&e)).unwrap();
            assert_eq!(
                (back.original_filename, back.archive_path),
                (e.original_filename, e.archive_path)
            );
        }
        let mut later = done();
        later.created_at = 1_800_000_000;
        later.updated_at = 1_700_000_000;
        assert_eq!(
            decode(1, &encode(&later)).unwrap().updated_at,
            1_700_000_000,
            "a clock set back"
        );
    }

    #[test]
    fn an_odd_sha256_is_kept_in_the_error_not_dropped() {
        let mut e = done();
        e.sha256 = Some("not-a-digest".into());
        let back = decode(e.media_id, &encode(&e)).unwrap();
        assert_eq!(back.sha256, None);
        assert!(back.error.unwrap().contains("not-a-digest"));
    }

    #[test]
    fn unknown_or_damaged_records_are_errors() {
        assert!(matches!(decode(1, &[]), Err(DoneError::Empty)));
        assert!(matches!(decode(1, &[9, 0]), Err(DoneError::Format(9))));
        let raw = encode(&done());
        for cut in 1..raw.len() {
            assert!(decode(1, &raw[..cut]).is_err(), "cut at {cut}");
        }
    }
}
