//! What a timed sync pass left behind (formerly `bench/verify_archive.py`), checked after
//! every pass of r2-sync and of the bash loop, so a broken tool fails the bench instead of
//! reporting a fast nothing.
//!
//! For each archived row (id, archive_path, file_size, r2_key): the file is at
//! ARCHIVE_DIR/archive_path with file_size bytes, its sidecar `<file>.json` beside it parses as
//! a JSON object naming the row's id (`media_id`), and the object is gone from the bucket
//! (BUCKET_DIR/r2_key: the test S3 server keeps each object as a file there). There must be
//! EXPECTED such rows.

use std::path::Path;

/// What was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("no bucket directory {0}")]
    NoBucket(String),
    /// The first five problems, and how many more.
    #[error("{0}")]
    Problems(String),
}

/// One archived row, as text (as the database returns it).
#[derive(Debug, Clone)]
pub struct ArchivedRow {
    pub id: String,
    pub archive_path: String,
    pub file_size: String,
    pub r2_key: String,
}

/// Checks `rows`; one line of what was checked.
pub fn verify(archive: &Path, bucket: &Path, expected: usize, rows: &[ArchivedRow]) -> Result<String, VerifyError> {
    if !bucket.is_dir() {
        return Err(VerifyError::NoBucket(bucket.display().to_string()));
    }
    let mut problems: Vec<String> = Vec::new();
    let mut total: u64 = 0;
    for row in rows {
        let id = &row.id;
        if row.archive_path.is_empty() {
            problems.push(format!("media {id}: archived without an archive_path"));
            continue;
        }
        let path = archive.join(&row.archive_path);
        let shown = path.display();
        let got = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) => {
                problems.push(format!("media {id}: no archived file at {shown} ({e})"));
                continue;
            }
        };
        total += got;
        if !row.file_size.is_empty() && row.file_size.parse::<u64>().ok() != Some(got) {
            problems.push(format!(
                "media {id}: {shown} has {got} bytes, the row says {}",
                row.file_size
            ));
        }
        let sidecar = format!("{}.json", path.display());
        match std::fs::read(&sidecar)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => {
                let named = match v.as_object().and_then(|o| o.get("media_id")) {
                    Some(serde_json::Value::Number(n)) => n.to_string() == *id,
                    Some(serde_json::Value::String(s)) => s == id,
                    _ => false,
                };
                if !named {
                    problems.push(format!("media {id}: the sidecar {sidecar} does not name media_id {id}"));
                }
            }
            Err(e) => problems.push(format!("media {id}: no readable sidecar {sidecar} ({e})")),
        }
        if bucket.join(&row.r2_key).symlink_metadata().is_ok() {
            problems.push(format!("media {id}: the object {} is still in the bucket", row.r2_key));
        }
    }
    if rows.len() != expected {
        problems.insert(0, format!("{} archived rows, {expected} expected", rows.len()));
    }
    if !problems.is_empty() {
        let more = if problems.len() > 5 {
            format!(" (and {} more)", problems.len() - 5)
        } else {
            String::new()
        };
        let first: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
        return Err(VerifyError::Problems(first.join("; ") + &more));
    }
    Ok(format!(
        "{} files ({total} bytes) archived with sidecars, their objects gone from the bucket",
        rows.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, path: &str, size: &str, key: &str) -> ArchivedRow {
        ArchivedRow {
            id: id.into(),
            archive_path: path.into(),
            file_size: size.into(),
            r2_key: key.into(),
        }
    }

    #[test]
    fn a_complete_archive_passes_and_each_gap_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, bucket) = (dir.path().join("archive"), dir.path().join("bucket"));
        std::fs::create_dir_all(archive.join("2026/11")).unwrap();
        std::fs::create_dir_all(bucket.join("small")).unwrap();
        std::fs::write(archive.join("2026/11/1-a.bin"), b"12345").unwrap();
        std::fs::write(archive.join("2026/11/1-a.bin.json"), br#"{"media_id": 1}"#).unwrap();
        let good = row("1", "2026/11/1-a.bin", "5", "small/a.bin");
        assert_eq!(
            verify(&archive, &bucket, 1, std::slice::from_ref(&good)).unwrap(),
            "1 files (5 bytes) archived with sidecars, their objects gone from the bucket"
        );

        std::fs::write(bucket.join("small/a.bin"), b"left").unwrap();
        let wrong_size = row("1", "2026/11/1-a.bin", "6", "small/a.bin");
        let err = verify(&archive, &bucket, 2, &[wrong_size, row("2", "", "", "x")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("2 archived rows, 2 expected") || text.contains("has 5 bytes, the row says 6"),
            "{text}"
        );
        assert!(text.contains("the object small/a.bin is still in the bucket"), "{text}");
        assert!(text.contains("media 2: archived without an archive_path"), "{text}");

        std::fs::write(archive.join("2026/11/1-a.bin.json"), br#"{"media_id": 7}"#).unwrap();
        let err = verify(&archive, &bucket, 1, &[good]).unwrap_err().to_string();
        assert!(err.contains("does not name media_id 1"), "{err}");
        assert_eq!(
            verify(&archive, &dir.path().join("nope"), 0, &[]).unwrap_err(),
            VerifyError::NoBucket(dir.path().join("nope").display().to_string())
        );
    }

    #[test]
    fn only_five_problems_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<ArchivedRow> = (1..=7).map(|i| row(&i.to_string(), "", "", "k")).collect();
        let err = verify(dir.path(), dir.path(), 7, &rows).unwrap_err().to_string();
        assert!(err.ends_with(" (and 2 more)"), "{err}");
        assert_eq!(err.matches("; ").count(), 4);
    }
}
