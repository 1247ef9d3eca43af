//! Why a step of a file's way stopped, and how long the file waits before the next attempt.

use crate::archive;
use crate::metrics::FailReason;
use crate::probe;
use crate::state::Entry;
use crate::storage::ObjectKey;

/// Why a step stopped.
pub(super) enum Trouble {
    /// Never going to work: fail the row, for this reason (its label) and with this text.
    Permanent(FailReason, String),
    /// Try again later.
    Transient(String),
    /// The downloaded file is gone on our side (lost to a crash or power cut before it was
    /// durable, or removed): fetched again at once, once per pass, then [`Trouble::Transient`].
    Refetch(String),
    /// The archive's filesystem is full: no point retrying within this pass.
    DiskFull(String),
    /// Not attempted: this pass has given up on the bucket. No attempt is counted; the next
    /// pass tries again.
    Postponed(String),
    /// Shutdown: progress is checkpointed.
    Interrupted,
    /// The row is no longer approved.
    Abandon(String),
}

/// Backoff after the `failures`-th failed attempt in a row (1 for the first): 30 s, doubling
/// per failure, capped at 6 h, ±20 % jitter.
pub(super) fn backoff_secs(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(10);
    let base = 30u64.saturating_mul(1 << doublings).min(6 * 3600);
    let jitter = rand::random_range(0.8..1.2);
    (base as f64 * jitter) as u64
}

pub(super) fn object_gone() -> Trouble {
    Trouble::Permanent(FailReason::ObjectGone, "object is gone from the bucket".into())
}

/// The object the entry is about. Its key was checked when the entry began; checked again
/// because a ledger written by an older version may hold one that names no object.
pub(super) fn object_key(entry: &Entry) -> Result<ObjectKey, Trouble> {
    ObjectKey::new(&entry.r2_key).map_err(|e| Trouble::Permanent(FailReason::Key, e.to_string()))
}

impl From<probe::ProbeError> for Trouble {
    fn from(e: probe::ProbeError) -> Self {
        if e.is_permanent() {
            Trouble::Permanent(FailReason::Ffprobe, e.to_string())
        } else {
            Trouble::Transient(e.to_string())
        }
    }
}

pub(super) fn archive_trouble(e: archive::ArchiveError) -> Trouble {
    if e.is_disk_full() {
        Trouble::DiskFull(e.to_string())
    } else {
        Trouble::Transient(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{backoff_secs, FailReason, Trouble};
    use crate::probe::ProbeError;

    /// ffprobe's verdicts fail the file under one label; not being able to run it is retried.
    #[test]
    fn probe_errors_are_classified_once_by_type() {
        let file = "/a/.r2-sync-tmp/i/7.part".to_owned();
        let rejected = ProbeError::Rejected {
            file: file.clone(),
            reason: "size mismatch".into(),
        };
        let timeout = ProbeError::Timeout { file, secs: 120 };
        for verdict in [rejected, timeout] {
            assert!(matches!(
                Trouble::from(verdict),
                Trouble::Permanent(FailReason::Ffprobe, _)
            ));
        }
        let spawn = ProbeError::Spawn {
            program: "ffprobe".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(matches!(Trouble::from(spawn), Trouble::Transient(_)));
    }

    #[test]
    fn backoff_starts_at_30_s_and_doubles_to_6_h() {
        for (failures, base) in [
            (1, 30),
            (2, 60),
            (3, 120),
            (9, 7680),
            (10, 15360),
            (11, 21600),
            (40, 21600),
        ] {
            for _ in 0..50 {
                let secs = backoff_secs(failures);
                let (low, high) = (base * 8 / 10, base * 12 / 10);
                assert!(
                    (low..=high).contains(&secs),
                    "failure {failures}: {secs} s outside {low}..={high}"
                );
            }
        }
    }
}
