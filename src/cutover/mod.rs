//! The migration's evidence and its last step (README, "Migrating from the bash service"):
//! `shadow-report` compares the shadow copies with the old service's, and `adopt` makes the
//! files the old service archived known to the ledger.

pub mod adopt;
pub mod report;

use std::time::{Duration, Instant};

pub use crate::archive::sha256_file;
use crate::db::{Db, DbError, MediaRow};

/// `--max-rate`: bytes per second, with an optional K, M or G (powers of 1000).
pub fn parse_rate(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => raw.split_at(i),
        None => (raw, ""),
    };
    let scale = match unit.to_ascii_uppercase().trim_end_matches("B/S").trim_end_matches('B') {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(format!("{raw:?}: a rate is bytes per second, e.g. 50M")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{raw:?}: a rate is a positive number of bytes per second, e.g. 50M"))
}

/// Rows read from PostgreSQL at a time by a walk over the archived ones.
const PAGE: i64 = 1000;

/// Every row the backend holds as archived with a path, in id order, read a page at a time.
pub struct ArchivedRows<'a> {
    db: &'a Db,
    after: i64,
    page: std::vec::IntoIter<MediaRow>,
}

impl<'a> ArchivedRows<'a> {
    pub fn new(db: &'a Db) -> Self {
        Self {
            db,
            after: 0,
            page: Vec::new().into_iter(),
        }
    }

    pub async fn next(&mut self) -> Result<Option<MediaRow>, DbError> {
        if let Some(row) = self.page.next() {
            return Ok(Some(row));
        }
        let page = self.db.archived_after(self.after, PAGE).await?;
        if let Some(last) = page.last() {
            self.after = last.id;
        }
        self.page = page.into_iter();
        Ok(self.page.next())
    }
}

/// Prints a progress line to stderr at most every few seconds.
pub struct Progress {
    what: &'static str,
    last: Instant,
    pub files: u64,
    pub bytes: u64,
}

impl Progress {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            last: Instant::now(),
            files: 0,
            bytes: 0,
        }
    }

    pub fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            eprintln!(
                "{}: {} files, {:.1} GiB so far",
                self.what,
                self.files,
                self.bytes as f64 / (1u64 << 30) as f64
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_files_and_holds_to_a_rate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        let (size, sha) = sha256_file(&file, None).unwrap();
        assert_eq!(size, 3);
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        std::fs::write(&file, vec![7u8; 300_000]).unwrap();
        let started = Instant::now();
        sha256_file(&file, Some(1_000_000)).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn rates_take_plain_bytes_and_decimal_suffixes() {
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert_eq!(parse_rate("50M"), Ok(50_000_000));
        assert_eq!(parse_rate("2G"), Ok(2_000_000_000));
        assert_eq!(parse_rate("10KB/s"), Ok(10_000));
        for bad in ["", "0", "fast", "5T", "-3"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
