//! `r2-sync status` and `GET /status`: what the ledger holds, readable at any size. Without
//! a filter, a summary (counts per stage, what is in flight, what is owed, the latest
//! failures) that costs what is in flight, not what is archived; with one, the matching
//! entries, newest media first, streamed as JSON lines for scripts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{entry::now_secs, Entry, Ledger, LedgerError, Query, Stage};

/// Entries in flight a summary shows.
const SUMMARY_IN_FLIGHT: usize = 20;
/// Failures a summary shows.
const SUMMARY_FAILURES: usize = 10;
/// Entries a listing shows a human when no `--limit` is given.
pub const HUMAN_LIMIT: usize = 100;

/// The filters `status` takes, on the command line and as `GET /status`'s query.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Filters {
    /// Only entries at this stage (repeatable): claimed, downloading, downloaded, archived,
    /// recorded, done, fail_pending, failed, abandoned, shadowed.
    #[arg(long = "stage", value_parser = parse_stage)]
    pub stages: Vec<Stage>,
    /// Only failed files, with their reasons (the same as --stage failed).
    #[arg(long)]
    pub failed: bool,
    /// Only this media.
    #[arg(long)]
    pub media_id: Option<u64>,
    /// Only entries changed since: a date (2026-12-01), an RFC 3339 time, or an age (36h, 7d).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<u64>,
    /// At most this many entries (a human listing shows 100 unless told).
    #[arg(long)]
    pub limit: Option<usize>,
}

impl Filters {
    /// Whether entries are listed (any filter given) rather than summarised.
    pub fn lists(&self) -> bool {
        *self != Filters::default()
    }

    pub fn query(&self) -> Query {
        let mut stages = self.stages.clone();
        if self.failed && !stages.contains(&Stage::Failed) {
            stages.push(Stage::Failed);
        }
        Query {
            stages,
            media_id: self.media_id,
            since: self.since,
            limit: self.limit,
        }
    }

    /// The query string of `GET /status` asking for the same (`since` in epoch seconds).
    pub fn to_url_query(&self) -> String {
        let mut parts: Vec<String> = self.stages.iter().map(|s| format!("stage={s}")).collect();
        if self.failed {
            parts.push("failed=1".into());
        }
        parts.extend(self.media_id.map(|id| format!("media_id={id}")));
        parts.extend(self.since.map(|t| format!("since={t}")));
        parts.extend(self.limit.map(|n| format!("limit={n}")));
        parts.join("&")
    }

    /// Reads `GET /status`'s query (as [`Self::to_url_query`] writes it).
    pub fn from_url_query(raw: &str) -> Result<Self, String> {
        let mut f = Filters::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{name}={v:?} is not a number"));
            match name {
                "stage" => f.stages.push(parse_stage(value)?),
                "failed" => f.failed = value != "0" && value != "false",
                "media_id" => f.media_id = Some(number(value)?),
                "since" => f.since = Some(parse_since(value)?),
                "limit" => f.limit = Some(number(value)? as usize),
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(f)
    }
}

pub fn parse_stage(raw: &str) -> Result<Stage, String> {
    Stage::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown stage {raw:?} (one of {})", names.join(", "))
    })
}

/// Seconds since the epoch: as such, a date, an RFC 3339 time, or an age before now.
pub fn parse_since(raw: &str) -> Result<u64, String> {
    if let Ok(secs) = raw.parse::<u64>() {
        return Ok(secs);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return u64::try_from(t.timestamp()).map_err(|_| format!("{raw:?} is before 1970"));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let t = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return u64::try_from(t.timestamp()).map_err(|_| format!("{raw:?} is before 1970"));
    }
    match humantime::parse_duration(raw) {
        Ok(age) => Ok(now_secs().saturating_sub(age.as_secs())),
        Err(_) => Err(format!(
            "{raw:?} is neither a date (2026-12-01), an RFC 3339 time nor an age (36h, 7d)"
        )),
    }
}

/// Writes PostgreSQL and the bucket are owed, from the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owed {
    /// Archived files whose `archived` record PostgreSQL has not taken yet.
    pub records: usize,
    /// Failures whose record PostgreSQL has not taken yet.
    pub failure_records: usize,
    /// Recorded files whose object the bucket has not deleted yet.
    pub deletes: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub entries: usize,
    pub stages: BTreeMap<String, usize>,
    /// Files being fetched or about to be placed (at most [`SUMMARY_IN_FLIGHT`]).
    pub in_flight: Vec<Entry>,
    pub owed: Owed,
    /// The latest failures, newest media first (at most [`SUMMARY_FAILURES`]).
    pub recent_failures: Vec<Entry>,
}

/// The summary: the counts kept by the ledger, the active entries and a few failures.
pub fn summary(ledger: &Ledger) -> Result<Summary, LedgerError> {
    let counts = ledger.counts()?;
    let at = |stage| counts.get(&stage).copied().unwrap_or(0);
    let in_flight = ledger.collect(&Query {
        stages: vec![Stage::Claimed, Stage::Downloading, Stage::Downloaded],
        limit: Some(SUMMARY_IN_FLIGHT),
        ..Query::default()
    })?;
    let recent_failures = ledger.collect(&Query {
        stages: vec![Stage::Failed, Stage::FailPending],
        limit: Some(SUMMARY_FAILURES),
        ..Query::default()
    })?;
    Ok(Summary {
        entries: counts.values().sum(),
        stages: counts.iter().map(|(s, n)| (s.as_str().to_owned(), *n)).collect(),
        in_flight,
        owed: Owed {
            records: at(Stage::Archived),
            failure_records: at(Stage::FailPending),
            deletes: at(Stage::Recorded),
        },
        recent_failures,
    })
}

fn when(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| secs.to_string())
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// One entry as a line for a human.
pub fn line(e: &Entry) -> String {
    let progress = match (e.stage(), e.size) {
        (Stage::Downloading, Some(size)) => format!("{} of {}", bytes(e.bytes_done), bytes(size)),
        (_, Some(size)) => bytes(size),
        (_, None) => "-".to_owned(),
    };
    // The archive path only once a file is there: before, it is only reserved.
    let what = match &e.archive_path {
        Some(path) if e.stage().has_archived_file() => path.as_str(),
        _ => e.r2_key.as_str(),
    };
    let mut out = format!(
        "{:>9}  {:<12} {:>22}  {}  {what}",
        e.media_id,
        e.stage().as_str(),
        progress,
        when(e.updated_at)
    );
    if let Some(error) = &e.error {
        out.push_str("  ");
        out.push_str(error);
    }
    out
}

/// The summary for a human.
pub fn render(s: &Summary) -> String {
    let mut out = format!("{} entries", s.entries);
    if !s.stages.is_empty() {
        let stages: Vec<String> = s.stages.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(": {}", stages.join(" ")));
    }
    out.push('\n');
    let in_flight = ["claimed", "downloading", "downloaded"]
        .iter()
        .map(|k| s.stages.get(*k).copied().unwrap_or(0))
        .sum::<usize>();
    out.push_str(&format!("in flight: {in_flight}\n"));
    for e in &s.in_flight {
        out.push_str(&format!("{}\n", line(e)));
    }
    let o = &s.owed;
    out.push_str(&format!(
        "owed: {} record(s) and {} failure record(s) to PostgreSQL, {} delete(s) to the bucket\n",
        o.records, o.failure_records, o.deletes
    ));
    let failed = s.stages.get("failed").copied().unwrap_or(0) + o.failure_records;
    if failed > 0 {
        out.push_str(&format!(
            "failures: {failed} (latest {} below; `r2-sync status --failed` lists them)\n",
            s.recent_failures.len()
        ));
        for e in &s.recent_failures {
            out.push_str(&format!("{}\n", line(e)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_travel_through_the_url_query_unchanged() {
        let f = Filters {
            stages: vec![Stage::Downloading, Stage::Done],
            failed: true,
            media_id: Some(42),
            since: Some(1_764_000_000),
            limit: Some(7),
        };
        assert_eq!(Filters::from_url_query(&f.to_url_query()).unwrap(), f);
        assert_eq!(Filters::from_url_query("").unwrap(), Filters::default());
        assert!(!Filters::default().lists());
        for bad in ["stage=sideways", "limit=many", "colour=red", "since=yesterday-ish"] {
            assert!(Filters::from_url_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failed_means_the_failed_stage() {
        let f = Filters {
            failed: true,
            ..Filters::default()
        };
        assert_eq!(f.query().stages, vec![Stage::Failed]);
    }

    #[test]
    fn since_takes_dates_times_ages_and_epoch_seconds() {
        assert_eq!(parse_since("2026-12-01").unwrap(), 1_796_083_200);
        assert_eq!(parse_since("2026-12-01T01:00:00Z").unwrap(), 1_796_086_800);
        assert_eq!(parse_since("1796083200").unwrap(), 1_796_083_200);
        let day_ago = parse_since("1d").unwrap();
        assert!(now_secs() - day_ago >= 86_400 && now_secs() - day_ago < 86_460);
        assert!(parse_since("last tuesday").is_err());
    }
}
