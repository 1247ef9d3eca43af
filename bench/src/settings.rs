//! The harness's settings, from the environment (every `BENCH_*` variable `make bench` has
//! always read; see the README's Benchmarks section and `main.rs`).

use std::path::PathBuf;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{name} must be a positive integer, not '{value}'")]
    Positive { name: &'static str, value: String },
    #[error("{name} must be a whole number, not '{value}'")]
    Whole { name: &'static str, value: String },
    #[error("BENCH_ONLY names '{0}', not one of: {ALL_ROWS}")]
    Row(String),
}

/// Every section, in the order they run.
pub const ALL_ROWS: &str = "videos big small resume serve context ledger";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// BENCH_RUNS: runs of each pair.
    pub runs: u32,
    /// BENCH_LOOP_RUNS: of those runs, how many also time the bash + rclone loop.
    pub loop_runs: u32,
    /// BENCH_VIDEOS: ~50 MB videos for row 1.
    pub videos: u32,
    /// BENCH_BIG_MIB: the big object of rows 2 and 4.
    pub big_mib: u64,
    /// BENCH_SMALL_FILES: 100 KB objects for row 3.
    pub small_files: u32,
    pub small_bytes: u64,
    /// BENCH_SERVE_MIB: the file served in row 5.
    pub serve_mib: u64,
    /// BENCH_WRK_SECS: duration of each wrk run.
    pub wrk_secs: u32,
    /// BENCH_SERVE_RUNS: runs of each serving pair.
    pub serve_runs: u32,
    /// BENCH_SERVE_CPUS: the CPU set (taskset -c) both servers of row 5 are pinned to.
    pub serve_cpus: String,
    /// BENCH_CLIENT_CPUS: the client's CPUs (empty: every CPU not in the servers' set).
    pub client_cpus: String,
    /// BENCH_SERVE_PERF: a file for one more ranged run of r2-sync under perf record -g.
    pub serve_perf: Option<PathBuf>,
    /// BENCH_ONLY: the sections to run, normalised to single spaces.
    pub only: String,
    /// BENCH_LEDGER_ENTRIES: ledger sizes, as given (checked when the ledger rows run).
    pub ledger_entries: String,
    /// BENCH_OUT.
    pub out: PathBuf,
    /// BENCH_SKIP_BUILD: use the binaries already in target/release.
    pub skip_build: bool,
    /// BENCH_R2_ENV: extra settings for every timed r2-sync pass (words).
    pub r2_env: String,
    /// BENCH_R2_WRAP: a profiler to run r2-sync under (words).
    pub r2_wrap: String,
    /// BENCH_FS: xfs, ext4 (a fresh loop-mounted filesystem) or none.
    pub fs: String,
}

pub const LEDGER_REQUESTS: u32 = 50;
pub const LEDGER_INTERVAL: &str = "2s";
pub const LEDGER_PASSES: usize = 5;

impl Settings {
    /// The settings `var` gives (`std::env::var` in the harness).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let text = |name: &str, default: &str| var(name).unwrap_or_else(|| default.to_owned());
        let positive = |name: &'static str, default: &str| -> Result<u64, SettingsError> {
            let value = text(name, default);
            match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(SettingsError::Positive { name, value }),
            }
        };
        let whole = |name: &'static str, default: &str| -> Result<u64, SettingsError> {
            let value = text(name, default);
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| SettingsError::Whole { name, value })
        };
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let only = words(&text("BENCH_ONLY", ALL_ROWS));
        if let Some(bad) = only
            .split(' ')
            .find(|w| !w.is_empty() && !ALL_ROWS.split(' ').any(|r| r == *w))
        {
            return Err(SettingsError::Row(bad.to_owned()));
        }
        Ok(Self {
            runs: small(positive("BENCH_RUNS", "3")?),
            loop_runs: small(whole("BENCH_LOOP_RUNS", "1")?),
            videos: small(positive("BENCH_VIDEOS", "20")?),
            big_mib: positive("BENCH_BIG_MIB", "2048")?,
            small_files: small(positive("BENCH_SMALL_FILES", "2000")?),
            small_bytes: 100_000,
            serve_mib: positive("BENCH_SERVE_MIB", "1024")?,
            wrk_secs: small(positive("BENCH_WRK_SECS", "10")?),
            serve_runs: small(positive("BENCH_SERVE_RUNS", "7")?),
            serve_cpus: text("BENCH_SERVE_CPUS", "0"),
            client_cpus: text("BENCH_CLIENT_CPUS", ""),
            serve_perf: var("BENCH_SERVE_PERF").filter(|p| !p.is_empty()).map(PathBuf::from),
            only,
            ledger_entries: text("BENCH_LEDGER_ENTRIES", "10000 1000000"),
            out: PathBuf::from(text("BENCH_OUT", "BENCHMARKS.md")),
            skip_build: var("BENCH_SKIP_BUILD").is_some_and(|v| !v.is_empty()),
            r2_env: text("BENCH_R2_ENV", ""),
            r2_wrap: text("BENCH_R2_WRAP", ""),
            fs: text("BENCH_FS", "xfs"),
        })
    }

    /// Whether section `row` runs.
    pub fn wants(&self, row: &str) -> bool {
        self.only.split(' ').any(|w| w == row)
    }

    pub fn big_bytes(&self) -> u64 {
        self.big_mib << 20
    }

    pub fn serve_bytes(&self) -> u64 {
        self.serve_mib << 20
    }
}

/// `text`'s words joined by single spaces (what `xargs` makes of a line).
pub fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The ledger sizes: positive integers.
pub fn ledger_sizes(entries: &str) -> Result<Vec<u64>, SettingsError> {
    entries
        .split_whitespace()
        .map(|w| match w.parse::<u64>() {
            Ok(n) if n > 0 && !w.starts_with('0') && !w.starts_with('+') => Ok(n),
            _ => Err(SettingsError::Positive {
                name: "BENCH_LEDGER_ENTRIES",
                value: w.to_owned(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Settings::from_vars(|name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = from(&[]).unwrap();
        assert_eq!((s.runs, s.loop_runs, s.videos, s.big_mib), (3, 1, 20, 2048));
        assert_eq!(
            (s.small_files, s.serve_mib, s.wrk_secs, s.serve_runs),
            (2000, 1024, 10, 7)
        );
        assert_eq!(s.only, ALL_ROWS);
        assert_eq!(s.out, PathBuf::from("BENCHMARKS.md"));
        assert_eq!(
            (s.fs.as_str(), s.serve_cpus.as_str(), s.skip_build),
            ("xfs", "0", false)
        );
        assert!(s.wants("ledger") && !s.wants("led"));
    }

    #[test]
    fn bad_numbers_and_rows_are_refused_by_name() {
        assert_eq!(
            from(&[("BENCH_RUNS", "0")]).unwrap_err().to_string(),
            "BENCH_RUNS must be a positive integer, not '0'"
        );
        assert!(from(&[("BENCH_LOOP_RUNS", "x")]).is_err());
        assert_eq!(from(&[("BENCH_LOOP_RUNS", "0")]).unwrap().loop_runs, 0);
        assert_eq!(
            from(&[("BENCH_ONLY", "serve bogus")]).unwrap_err(),
            SettingsError::Row("bogus".into())
        );
        let s = from(&[("BENCH_ONLY", "  ledger\tserve "), ("BENCH_SKIP_BUILD", "1")]).unwrap();
        assert_eq!(s.only, "ledger serve");
        assert!(s.skip_build);
    }

    #[test]
    fn ledger_sizes_are_positive_integers() {
        assert_eq!(ledger_sizes("10000 1000000").unwrap(), [10_000, 1_000_000]);
        assert!(ledger_sizes("0").is_err());
        assert!(ledger_sizes("10k").is_err());
        assert!(ledger_sizes("010").is_err());
    }
}
