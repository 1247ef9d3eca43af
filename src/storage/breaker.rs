//! A pass's circuit breaker for the bucket: once several requests in a row got no answer at
//! all (connection refused or reset, timeouts), the bucket is taken to be down and the rest
//! of the pass's requests are not sent. A bucket that accepts connections and never answers
//! would otherwise cost every file of a batch its full timeouts, one after the other; the
//! files are left for the next pass instead, which tries the bucket afresh.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Requests in a row without an answer before the bucket counts as down. More than one, so
/// that a single lost connection on a healthy bucket defers nothing.
pub const TRIP_AFTER: u32 = 3;

#[derive(Debug, Default)]
pub struct Breaker {
    unanswered: AtomicU32,
    open: AtomicBool,
}

impl Breaker {
    /// Whether requests are being held back.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// The bucket answered (any HTTP status: it is there).
    pub fn answered(&self) {
        self.unanswered.store(0, Ordering::Relaxed);
    }

    /// A request got no answer. True when this one tripped the breaker.
    pub fn unanswered(&self) -> bool {
        let count = self.unanswered.fetch_add(1, Ordering::Relaxed) + 1;
        count >= TRIP_AFTER && !self.open.swap(true, Ordering::Relaxed)
    }

    /// Closes it again: a new pass tries the bucket.
    pub fn reset(&self) {
        self.unanswered.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_requests_in_a_row_without_an_answer_and_only_then() {
        let b = Breaker::default();
        for _ in 0..5 {
            assert!(!b.unanswered());
            assert!(!b.unanswered());
            b.answered();
        }
        assert!(!b.is_open(), "an answer in between keeps it closed");
        assert!(!b.unanswered());
        assert!(!b.unanswered());
        assert!(b.unanswered(), "the third in a row trips it");
        assert!(b.is_open());
        assert!(!b.unanswered(), "trips once");
        b.answered();
        assert!(b.is_open(), "a late answer does not reopen the pass");
        b.reset();
        assert!(!b.is_open());
    }
}
