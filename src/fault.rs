//! Test-only crash points. With the `fault-injection` feature, `R2SYNC_FAULT=<point>` makes
//! the process abort (as abruptly as a power cut or SIGKILL: no destructors, no flushes) when
//! it reaches that point, and `R2SYNC_FAULT=download@<bytes>` once that many bytes of a
//! transfer are written. Without the feature (release images) every call is an empty inline
//! function.

/// Every named crash point, in pipeline order (tests loop over them).
pub const POINTS: &[&str] = &[
    "after_claim",
    "after_head",
    "after_downloaded",
    "before_rename",
    "after_rename",
    "after_sidecar",
    "after_archived",
    "after_record",
    "after_recorded",
    "after_delete",
    "after_fail_pending",
    "after_fail_record",
];

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::OnceLock;

    static FAULT: OnceLock<Option<String>> = OnceLock::new();

    pub fn arm(fault: Option<String>) {
        // Armed once, at start-up; a second call (tests in one process) keeps the first.
        drop(FAULT.set(fault));
    }

    fn crash(why: &str) -> ! {
        eprintln!("r2-sync: fault injection: crashing at {why}");
        std::process::abort()
    }

    pub fn point(name: &str) {
        if FAULT.get().and_then(Option::as_deref) == Some(name) {
            crash(name);
        }
    }

    pub fn bytes(written: u64) {
        let limit = FAULT
            .get()
            .and_then(Option::as_deref)
            .and_then(|f| f.strip_prefix("download@"));
        if let Some(limit) = limit.and_then(|l| l.parse::<u64>().ok()) {
            if written >= limit {
                crash("download byte limit");
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::{arm, bytes, point};

#[cfg(not(feature = "fault-injection"))]
mod disarmed {
    #[inline(always)]
    pub fn arm(_: Option<String>) {}
    #[inline(always)]
    pub fn point(_: &str) {}
    #[inline(always)]
    pub fn bytes(_: u64) {}
}

#[cfg(not(feature = "fault-injection"))]
pub use disarmed::{arm, bytes, point};
