//! When passes run: every `SYNC_INTERVAL` after the previous pass ends, or at the times of
//! `SYNC_CRON`. Passes never overlap: a long pass delays the next one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use slog::info;
use tokio_util::sync::CancellationToken;

use super::Syncer;
use crate::config::Schedule;

/// How long to wait after a pass that ended at `now`.
pub fn next_wait(schedule: &Schedule, now: DateTime<Utc>) -> Duration {
    match schedule {
        Schedule::Every(interval) => *interval,
        Schedule::Cron(cron) => cron
            .after(&now)
            .next()
            .and_then(|next| (next - now).to_std().ok())
            .unwrap_or(Duration::from_secs(24 * 3600)),
    }
}

/// Reconciles, then runs passes on the schedule until `shutdown`.
pub async fn run(syncer: Syncer, shutdown: CancellationToken) {
    syncer.ctx.activity.scheduler_started();
    syncer.reconcile().await;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        syncer.pass(&shutdown).await;
        let wait = next_wait(&syncer.ctx.cfg.sync.schedule, Utc::now());
        info!(syncer.log, "next pass scheduled"; "in_s" => wait.as_secs());
        syncer
            .ctx
            .activity
            .next_pass_at(crate::state::entry::now_secs() + wait.as_secs());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // "Sync now" on the dashboard.
            () = syncer.ctx.activity.woken() => info!(syncer.log, "pass asked for"),
            () = shutdown.cancelled() => break,
        }
    }
    info!(syncer.log, "scheduler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn interval_and_cron_waits() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 7, 30).unwrap();
        assert_eq!(
            next_wait(&Schedule::Every(Duration::from_secs(1800)), now),
            Duration::from_secs(1800)
        );
        let cron = crate::config::parse_cron("*/15 * * * *").unwrap();
        assert_eq!(
            next_wait(&Schedule::Cron(Box::new(cron)), now),
            Duration::from_secs(7 * 60 + 30)
        );
    }
}
