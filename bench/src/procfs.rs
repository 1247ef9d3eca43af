//! What the harness reads from /proc (CPU seconds of the S3 server, PostgreSQL and the servers
//! of row 5, memory of `r2-sync run`, whether a process still runs) and from GNU time's report.

use std::path::Path;

/// A report of GNU time that lacks a figure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcError {
    #[error("GNU time's report has no '{0}'")]
    TimeReport(&'static str),
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is the state (field 3).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn read_stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// Field `n` (1-based, as proc(5) numbers them, n ≥ 3) of a stat line.
fn field(stat: &str, n: usize) -> Option<u64> {
    stat_fields(stat).get(n - 3).and_then(|f| f.parse().ok())
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// utime + stime of a stat line, in ticks.
fn own_ticks(stat: &str) -> u64 {
    field(stat, 14).unwrap_or(0) + field(stat, 15).unwrap_or(0)
}

/// CPU seconds (user+sys) process `pid` has used so far; 0 when it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    read_stat(pid).map_or(0.0, |s| own_ticks(&s) as f64 / ticks_per_second())
}

/// CPU seconds (user+sys) of `pid` and its children now running (nginx's master and workers).
pub fn tree_cpu_secs(pid: u32) -> f64 {
    let mut ticks = read_stat(pid).map_or(0, |s| own_ticks(&s));
    for (_, stat) in all_stats() {
        if field(&stat, 4) == Some(u64::from(pid)) {
            ticks += own_ticks(&stat);
        }
    }
    ticks as f64 / ticks_per_second()
}

fn all_stats() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| read_stat(pid).map(|s| (pid, s)))
        .collect()
}

fn comm(stat: &str) -> &str {
    match (stat.find('('), stat.rfind(')')) {
        (Some(a), Some(b)) if a < b => &stat[a + 1..b],
        _ => "",
    }
}

/// CPU seconds PostgreSQL has used so far: its processes now, plus the backends that have
/// exited (the postmaster's reaped children: its cutime + cstime). The postmaster is the
/// oldest process named postgres.
pub fn postgres_cpu_secs() -> f64 {
    let procs: Vec<(u32, String)> = all_stats().into_iter().filter(|(_, s)| comm(s) == "postgres").collect();
    let postmaster = procs
        .iter()
        .min_by_key(|(pid, s)| (field(s, 22).unwrap_or(u64::MAX), *pid))
        .map(|(pid, _)| *pid);
    let ticks: u64 = procs
        .iter()
        .map(|(pid, s)| {
            let reaped = if Some(*pid) == postmaster {
                field(s, 16).unwrap_or(0) + field(s, 17).unwrap_or(0)
            } else {
                0
            };
            own_ticks(s) + reaped
        })
        .sum();
    ticks as f64 / ticks_per_second()
}

/// Whether `pid` runs (a zombie answers kill(0) but has ended).
pub fn alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|s| stat_fields(&s).first().is_some_and(|state| *state != "Z"))
}

/// A `kB` line of `/proc/<pid>/status` (VmRSS, VmHWM).
pub fn status_kb(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_value(&text, name)
}

fn status_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// System CPU seconds the calling thread has used (`/proc/thread-self/stat`, clock ticks).
pub fn thread_sys_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| field(&s, 15))
        .map_or(0.0, |t| t as f64 / ticks_per_second())
}

/// What GNU time (`-v`) reports of a command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeReport {
    /// User + system CPU seconds of the command and every descendant it waited for.
    pub cpu_secs: f64,
    /// Maximum resident set size, kB: the largest one process of the tree.
    pub max_rss_kb: u64,
}

pub fn time_report(text: &str) -> Result<TimeReport, ProcError> {
    let value = |name: &'static str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.trim().strip_prefix(':'))
            .map(str::trim)
            .ok_or(ProcError::TimeReport(name))
    };
    let secs = |name| value(name)?.parse::<f64>().map_err(|_| ProcError::TimeReport(name));
    let cpu = secs("User time (seconds)")? + secs("System time (seconds)")?;
    let rss_name = "Maximum resident set size (kbytes)";
    let max_rss_kb = value(rss_name)?.parse().map_err(|_| ProcError::TimeReport(rss_name))?;
    Ok(TimeReport {
        cpu_secs: cpu,
        max_rss_kb,
    })
}

/// Reads GNU time's report file.
pub fn read_time_report(path: &Path) -> Result<TimeReport, ProcError> {
    time_report(&std::fs::read_to_string(path).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_after_the_command_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 150 25 7 3 20 0 1 0 999 0";
        assert_eq!(comm(stat), "a) b (c)");
        assert_eq!(field(stat, 3), None, "the state is not a number");
        assert_eq!(field(stat, 4), Some(1));
        assert_eq!(own_ticks(stat), 175);
        assert_eq!(
            (field(stat, 16), field(stat, 17), field(stat, 22)),
            (Some(7), Some(3), Some(999))
        );
    }

    #[test]
    fn this_process_is_alive_and_has_memory() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(status_kb(me, "VmRSS").unwrap() > 0);
        assert!(status_kb(me, "VmHWM").unwrap() >= status_kb(me, "VmRSS").unwrap() / 2);
        assert!(!alive(u32::MAX));
        assert_eq!(status_value("VmRSSx: 5 kB\nVmRSS:\t  1234 kB\n", "VmRSS"), Some(1234));
    }

    #[test]
    fn gnu_time_reports_parse() {
        let text = "\tCommand being timed: \"true\"\n\tUser time (seconds): 1.25\n\tSystem time (seconds): 0.50\n\
                    \tPercent of CPU this job got: 99%\n\tMaximum resident set size (kbytes): 23264\n";
        assert_eq!(
            time_report(text).unwrap(),
            TimeReport {
                cpu_secs: 1.75,
                max_rss_kb: 23264
            }
        );
        assert_eq!(
            time_report("User time (seconds): 1").unwrap_err(),
            ProcError::TimeReport("System time (seconds)")
        );
    }
}
