//! What the process is doing now and did lately, in memory, for the dashboard: the pass in
//! progress, each transfer in flight (its byte counter is the download writer's own, read
//! without a lock), the next pass's time, the last passes and the bytes archived per day.
//! The ledger keeps what must survive a restart; this keeps what only a running process
//! knows, a few KiB at most.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Notify;

use crate::state::entry::now_secs;

/// Passes remembered for the history.
const PASSES_KEPT: usize = 20;
/// Days of bytes archived kept for the chart.
const DAYS_KEPT: usize = 14;
const DAY: u64 = 24 * 3600;

/// The pass in progress.
#[derive(Debug, Clone, Serialize)]
pub struct PassNow {
    pub started_at: u64,
    pub claimed: usize,
    /// Files whose turn in this pass ended, whatever the outcome.
    pub done: usize,
}

/// One finished pass.
#[derive(Debug, Clone, Serialize)]
pub struct PassRecord {
    pub started_at: u64,
    pub duration_ms: u64,
    pub claimed: usize,
    pub archived: usize,
    pub failed: usize,
    pub bytes: u64,
    /// `ok` (every claimed file succeeded), `partial` (some did not) or `skipped` (could not claim).
    pub outcome: &'static str,
}

/// A transfer in flight, as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TransferNow {
    pub media_id: u64,
    /// The file's original name, else its object key (untrusted text).
    pub name: String,
    pub bytes: u64,
    pub total: u64,
    /// Where a resumed transfer started (0: from the beginning).
    pub resumed_from: u64,
    pub rate_bytes_per_s: u64,
    /// None while nothing has moved yet.
    pub eta_s: Option<u64>,
}

struct Live {
    name: String,
    total: u64,
    resumed_from: u64,
    began: Instant,
    written: Arc<AtomicU64>,
}

impl Live {
    fn now(&self, media_id: u64) -> TransferNow {
        let bytes = self.written.load(Ordering::Relaxed);
        let moved = bytes.saturating_sub(self.resumed_from);
        let rate = (moved as f64 / self.began.elapsed().as_secs_f64().max(0.001)) as u64;
        TransferNow {
            media_id,
            name: self.name.clone(),
            bytes,
            total: self.total,
            resumed_from: self.resumed_from,
            rate_bytes_per_s: rate,
            eta_s: (rate > 0).then(|| self.total.saturating_sub(bytes) / rate),
        }
    }
}

#[derive(Default)]
struct Inner {
    pass: Option<PassNow>,
    transfers: BTreeMap<u64, Live>,
    passes: VecDeque<PassRecord>,
    /// Day number (days since the epoch, UTC) → bytes archived.
    daily: BTreeMap<u64, u64>,
    next_pass_at: Option<u64>,
    /// A scheduler runs in this process (`run`, `sync`): "Sync now" has someone to wake.
    scheduled: bool,
}

/// Shared by the scheduler, the files in flight and the health port's dashboard.
#[derive(Default)]
pub struct Activity {
    inner: Mutex<Inner>,
    wake: Notify,
}

/// What the dashboard reads, at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub pass: Option<PassNow>,
    pub transfers: Vec<TransferNow>,
    pub next_pass_at: Option<u64>,
    pub scheduled: bool,
    /// Newest first.
    pub passes: Vec<PassRecord>,
    /// Oldest first: `(day as YYYY-MM-DD, bytes)`, one per day of the last [`DAYS_KEPT`].
    pub daily: Vec<(String, u64)>,
}

/// Why "Sync now" did not start a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WakeError {
    #[error("a pass is running")]
    Running,
    #[error("no scheduler runs in this process (r2-sync serve)")]
    NoScheduler,
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind: still worth showing.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn scheduler_started(&self) {
        self.lock().scheduled = true;
    }

    /// A pass began (settling what earlier ones owe, then claiming).
    pub fn pass_started(&self) {
        self.lock().pass = Some(PassNow {
            started_at: now_secs(),
            claimed: 0,
            done: 0,
        });
    }

    pub fn claimed(&self, claimed: usize) {
        if let Some(pass) = self.lock().pass.as_mut() {
            pass.claimed = claimed;
        }
    }

    pub fn file_finished(&self) {
        if let Some(pass) = self.lock().pass.as_mut() {
            pass.done += 1;
        }
    }

    /// The pass ended; `record` None for a pass that claimed nothing (not worth a row).
    pub fn pass_finished(&self, record: Option<PassRecord>) {
        let mut inner = self.lock();
        inner.pass = None;
        let Some(record) = record else { return };
        *inner.daily.entry(now_secs() / DAY).or_default() += record.bytes;
        while inner.daily.len() > DAYS_KEPT {
            inner.daily.pop_first();
        }
        inner.passes.push_front(record);
        inner.passes.truncate(PASSES_KEPT);
    }

    pub fn next_pass_at(&self, at: u64) {
        self.lock().next_pass_at = Some(at);
    }

    /// Shows a transfer until the guard is dropped; `written` is the download's byte count.
    pub fn transfer(&self, media_id: u64, name: String, total: u64, written: Arc<AtomicU64>) -> TransferGuard<'_> {
        let resumed_from = written.load(Ordering::Relaxed);
        let live = Live {
            name,
            total,
            resumed_from,
            began: Instant::now(),
            written,
        };
        self.lock().transfers.insert(media_id, live);
        TransferGuard {
            activity: self,
            media_id,
        }
    }

    /// Asks the scheduler for a pass now, unless one runs.
    pub fn wake(&self) -> Result<(), WakeError> {
        let inner = self.lock();
        match (inner.scheduled, inner.pass.is_some()) {
            (false, _) => Err(WakeError::NoScheduler),
            (true, true) => Err(WakeError::Running),
            (true, false) => {
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    /// Resolves when someone asked for a pass now.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let today = now_secs() / DAY;
        let first = today + 1 - DAYS_KEPT as u64;
        let daily = (first..=today)
            .map(|day| (day_name(day), inner.daily.get(&day).copied().unwrap_or(0)))
            .collect();
        Snapshot {
            pass: inner.pass.clone(),
            transfers: inner.transfers.iter().map(|(id, live)| live.now(*id)).collect(),
            next_pass_at: inner.next_pass_at,
            scheduled: inner.scheduled,
            passes: inner.passes.iter().cloned().collect(),
            daily,
        }
    }
}

fn day_name(day: u64) -> String {
    chrono::DateTime::from_timestamp((day * DAY) as i64, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Removes its transfer from the dashboard when dropped.
pub struct TransferGuard<'a> {
    activity: &'a Activity,
    media_id: u64,
}

impl Drop for TransferGuard<'_> {
    fn drop(&mut self) {
        self.activity.lock().transfers.remove(&self.media_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_shows_its_counter_and_goes_with_its_guard() {
        let activity = Activity::default();
        let written = Arc::new(AtomicU64::new(100));
        let guard = activity.transfer(7, "a.mp4".into(), 1000, written.clone());
        written.store(400, Ordering::Relaxed);
        let shown = &activity.snapshot().transfers[0];
        assert_eq!(
            (shown.media_id, shown.bytes, shown.total, shown.resumed_from),
            (7, 400, 1000, 100)
        );
        drop(guard);
        assert!(activity.snapshot().transfers.is_empty());
    }

    #[test]
    fn sync_now_needs_a_scheduler_and_no_pass_running() {
        let activity = Activity::default();
        assert_eq!(activity.wake(), Err(WakeError::NoScheduler));
        activity.scheduler_started();
        activity.pass_started();
        assert_eq!(activity.wake(), Err(WakeError::Running));
        activity.pass_finished(None);
        assert_eq!(activity.wake(), Ok(()));
    }

    #[test]
    fn passes_are_kept_newest_first_and_summed_per_day() {
        let activity = Activity::default();
        for bytes in [10, 20] {
            activity.pass_started();
            activity.claimed(1);
            activity.file_finished();
            let record = PassRecord {
                started_at: now_secs(),
                duration_ms: 5,
                claimed: 1,
                archived: 1,
                failed: 0,
                bytes,
                outcome: "ok",
            };
            activity.pass_finished(Some(record));
        }
        let shot = activity.snapshot();
        assert_eq!(shot.passes.iter().map(|p| p.bytes).collect::<Vec<_>>(), [20, 10]);
        assert_eq!(shot.daily.len(), DAYS_KEPT);
        assert_eq!(shot.daily.last().unwrap().1, 30);
        assert!(shot.pass.is_none());
    }
}
