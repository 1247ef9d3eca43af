//! The report (formerly `bench/report.py`): the harness's raw results into BENCHMARKS.md.
//!
//! RESULTS lines: key TAB subject TAB run TAB value (one measurement of one run).
//! META lines:    key TAB value (machine description and settings).
//! Writes OUT (table, resources, notes, per-run values) and returns the main table. Medians
//! over runs; ratio = r2-sync median / baseline median. [`Only::Ledger`] (a `BENCH_ONLY=ledger`
//! run) replaces only the ledger section of an existing OUT (or inserts it before its resources
//! table) and keeps the rest of the file; [`Only::Serve`] does the same for the serving section
//! and replaces row 5's lines of the results table by this run's.

use std::collections::BTreeMap;
use std::path::Path;

use crate::numfmt::{fmt, g, human_bytes, int_thousands, median, ratio};

/// Why no report was written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path}, line {line}: {problem}")]
    Parse { path: String, line: usize, problem: String },
    #[error("the run recorded no {0} (meta)")]
    Missing(String),
    #[error("report: no {0} results")]
    Nothing(&'static str),
}

/// Every run's value of each (key, subject), in run order; iterated sorted by key, subject.
pub type Values = BTreeMap<(String, String), Vec<f64>>;
/// The run's description: machine, settings, notes.
pub type Meta = BTreeMap<String, String>;

/// Which part of OUT a run replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    All,
    Ledger,
    Serve,
}

/// The results and meta files' contents.
pub fn parse(results: &str, meta: &str, results_path: &str) -> Result<(Values, Meta), ReportError> {
    let mut values = Values::new();
    for (i, line) in results.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem: &str| ReportError::Parse {
            path: results_path.to_owned(),
            line: i + 1,
            problem: problem.to_owned(),
        };
        let f: Vec<&str> = line.split('\t').collect();
        let [key, subject, _run, value] = f[..] else {
            return Err(bad("not four tab-separated fields"));
        };
        let value: f64 = value.trim().parse().map_err(|_| bad("the value is not a number"))?;
        values
            .entry((key.to_owned(), subject.to_owned()))
            .or_default()
            .push(value);
    }
    let meta = meta
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok((values, meta))
}

fn med(values: &Values, key: &str, subject: Option<&str>) -> Option<f64> {
    subject.and_then(|s| {
        values
            .get(&(key.to_owned(), s.to_owned()))
            .and_then(|v| median(v.as_slice()))
    })
}

fn get<'m>(meta: &'m Meta, key: &str) -> Result<&'m str, ReportError> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| ReportError::Missing(key.to_owned()))
}

/// "Measured by `<command>` on <date>: <machine>; <versions>." for a section made by a run of
/// its own (`command_key` names the meta holding that run's command).
fn measured_by(meta: &Meta, command_key: &str) -> Result<String, ReportError> {
    Ok(format!(
        "Measured by `{}` on {}: {}, `nproc` = {} (shared; load average at start {}), {}; {}.",
        meta.get(command_key).map_or("make bench", String::as_str),
        get(meta, "date")?,
        get(meta, "cpu")?,
        get(meta, "nproc")?,
        get(meta, "load")?,
        get(meta, "mem")?,
        get(meta, "versions")?,
    ))
}

fn get_u64(meta: &Meta, key: &str) -> Result<u64, ReportError> {
    get(meta, key)?
        .trim()
        .parse()
        .map_err(|_| ReportError::Missing(format!("{key} as a whole number")))
}

/// A row's target, judged on (r2-sync's median, the baseline's median).
#[derive(Debug, Clone, Copy)]
enum Target {
    RatioAtLeast(f64),
    AtMost(f64, &'static str),
    Below(f64, &'static str),
    Rss { ratio: f64, limit: f64 },
}

impl Target {
    fn check(self, ours: Option<f64>, base: Option<f64>) -> (String, Option<bool>) {
        // Python's `not base`: no baseline, or a zero one.
        let base = base.filter(|b| *b != 0.0);
        match self {
            Target::RatioAtLeast(t) => (format!("≥ {}×", g(t, 6)), ours.zip(base).map(|(o, b)| o / b >= t)),
            Target::AtMost(limit, unit) => (format!("≤ {} {unit}", g(limit, 6)), ours.map(|o| o <= limit)),
            Target::Below(limit, unit) => (format!("< {} {unit}", g(limit, 6)), ours.map(|o| o < limit)),
            Target::Rss { ratio, limit } => (
                format!("≤ {}× and < {} MiB", g(ratio, 6), g(limit, 6)),
                ours.zip(base).map(|(o, b)| o / b <= ratio && o < limit),
            ),
        }
    }
}

/// One line of the results table.
#[derive(Debug, Clone)]
struct Row {
    num: &'static str,
    label: String,
    unit: &'static str,
    key: String,
    /// Subject of r2-sync's value; None for context rows.
    ours: Option<&'static str>,
    /// Subject of the baseline's value.
    base: Option<&'static str>,
    base_name: &'static str,
    target: Option<Target>,
    /// The min–max over runs beside the median (rows whose runs are short and noisy).
    spread: bool,
}

#[allow(clippy::too_many_arguments)]
fn row(
    num: &'static str,
    label: impl Into<String>,
    unit: &'static str,
    key: impl Into<String>,
    ours: Option<&'static str>,
    base: Option<&'static str>,
    base_name: &'static str,
    target: Option<Target>,
) -> Row {
    Row {
        num,
        label: label.into(),
        unit,
        key: key.into(),
        ours,
        base,
        base_name,
        target,
        spread: false,
    }
}

fn spread(mut r: Row) -> Row {
    r.spread = true;
    r
}

const BASH_LOOP: &str = "bash loop";

/// Row `num` against the bash + rclone loop r2-sync replaces (bench/bash-loop.sh), and the CPU
/// each tool spends per GB it archives (rclone: copies). Context: no targets.
fn bash_loop_rows(num: &'static str, section: &str, what: &str, ours: &'static str) -> Vec<Row> {
    let o = Some(ours);
    vec![
        row(
            num,
            format!(
                "… {what}, vs the bash + rclone loop (bench/bash-loop.sh: psql, then rclone copyto, \
            ffprobe, mv, jq, psql, rclone deletefile per file, one at a time)"
            ),
            "files/s",
            format!("{section}.fps"),
            o,
            Some("bashloop"),
            BASH_LOOP,
            None,
        ),
        row(
            num,
            "… CPU (user+sys of the whole process tree)",
            "CPU-s",
            format!("{section}.cpu_s"),
            o,
            Some("bashloop"),
            BASH_LOOP,
            None,
        ),
        row(
            num,
            "… peak RSS (largest process of the tree)",
            "MiB",
            format!("{section}.rss_mib"),
            o,
            Some("bashloop"),
            BASH_LOOP,
            None,
        ),
        row(
            num,
            "… CPU-s per GB archived, vs rclone copy (per GB copied)",
            "CPU-s/GB",
            format!("{section}.cpu_per_gb"),
            o,
            Some("rclone"),
            "rclone",
            None,
        ),
        row(
            num,
            "… CPU-s per GB archived, vs the bash + rclone loop",
            "CPU-s/GB",
            format!("{section}.cpu_per_gb"),
            o,
            Some("bashloop"),
            BASH_LOOP,
            None,
        ),
    ]
}

#[rustfmt::skip]
fn rows(m: &Meta) -> Result<Vec<Row>, ReportError> {
    let videos = format!("{} × {} videos", get(m, "videos")?, human_bytes(get_u64(m, "video_bytes")?));
    let big = human_bytes(get_u64(m, "big_bytes")?);
    let small = format!("{} × {} KB objects", int_thousands(get_u64(m, "small_files")?), get_u64(m, "small_bytes")? / 1000);
    let serve = human_bytes(get_u64(m, "serve_bytes")?);
    let cache = m.get("dd_cache").map_or("?", String::as_str);
    let small_files = get(m, "small_files")?;
    let (r2, rc, ng) = (Some("r2sync"), Some("rclone"), Some("nginx"));
    let mut rows = vec![
        row("1", format!("sync {videos} (ffprobe on each), SYNC_CONCURRENCY=2 (default)"), "MB/s",
            "videos.mbps", Some("r2sync_c2"), rc, "rclone", Some(Target::RatioAtLeast(1.3))),
        row("1", "… same, SYNC_CONCURRENCY=4", "MB/s",
            "videos.mbps", Some("r2sync_c4"), rc, "rclone", Some(Target::RatioAtLeast(1.3))),
    ];
    rows.extend(bash_loop_rows("1", "videos", "same (r2-sync: SYNC_CONCURRENCY=2)", "r2sync_c2"));
    rows.extend([
        row("2", format!("sync one {big} object (random data, VALIDATE_MEDIA=false: not media)"), "MB/s",
            "big.mbps", r2, rc, "rclone", Some(Target::RatioAtLeast(1.0))),
        row("2", "… peak RSS (Maximum resident set size)", "MiB",
            "big.rss_mib", r2, rc, "rclone", Some(Target::Rss { ratio: 0.5, limit: 64.0 })),
        row("3", format!("sync {small} (VALIDATE_MEDIA=false, BATCH_SIZE={small_files})"), "files/s",
            "small.fps", r2, rc, "rclone", Some(Target::RatioAtLeast(1.0))),
    ]);
    rows.extend(bash_loop_rows("3", "small", "same (VALIDATE_MEDIA=false in both)", "r2sync"));
    rows.extend([
        row("4", format!("bytes downloaded again after SIGKILL at ≥ 50 % of the {big} object"), "% of object",
            "resume.pct", r2, rc, "rclone", Some(Target::AtMost(5.0, "%"))),
        spread(row("5", format!("serve a {serve} file to one client (curl -o /dev/null); median (min–max)"), "MB/s",
            "serve1.mbps", r2, ng, "nginx", Some(Target::RatioAtLeast(0.9)))),
        spread(row("5", "… server CPU (user+sys) per GB of body sent", "CPU-s/GB",
            "serve1.cpu_per_gb", r2, ng, "nginx", None)),
        spread(row("5", "1 MiB ranged GETs at random offsets, 64 connections, JWT on each (wrk); median (min–max)", "req/s",
            "range.rps", r2, ng, "nginx", Some(Target::RatioAtLeast(0.8)))),
        spread(row("5", "… server CPU (user+sys) per GB of body sent", "CPU-s/GB",
            "range.cpu_per_gb", r2, ng, "nginx", None)),
        row("5", "idle RSS of `r2-sync run` (VmRSS after 5 s idle)", "MiB",
            "idle.rss_mib", r2, None, "", Some(Target::Below(20.0, "MiB"))),
        row("6", format!("MD5 + SHA-256 alone of the {videos} (examples/hash_floor.rs, page cache)"), "CPU-s",
            "videofloor.cpu_s", None, Some("hashes"), "hashes", None),
        row("6", format!("ffprobe alone on each of the {videos}, r2-sync's arguments"), "CPU-s",
            "videofloor.cpu_s", None, Some("ffprobe"), "ffprobe", None),
        row("6", format!("validation CPU per file on the {videos}: what r2-sync runs on them (ffprobe-demux \
            settles an MP4 alone: FFPROBE_DEMUX_PATH, scripts/build-ffprobe.sh --demux-only) vs Debian's \
            full /usr/bin/ffprobe"), "CPU ms/file",
            "videofloor.ms_per_file", Some("ffprobe_demux"), Some("ffprobe"), "Debian ffprobe", Some(Target::AtMost(10.0, "ms"))),
        row("6", "… the minimal full build (FFPROBE_PATH: what r2-sync runs where ffprobe-demux cannot \
            settle a file) vs Debian's", "CPU ms/file",
            "videofloor.ms_per_file", Some("ffprobe_min"), Some("ffprobe"), "Debian ffprobe", None),
        row("6", format!("S3 client alone, {small}: GET + MD5 of each, no disk, 16 at once (r2-sync's own code: examples/get_floor.rs)"), "CPU-s",
            "smallget.cpu_s", None, Some("rusts3"), "rust-s3", None),
        row("6", "… the same by rclone (md5sum --download --checkers 16)", "CPU-s",
            "smallget.cpu_s", None, rc, "rclone", None),
        row("6", "… with SHA-256 of each body too (the sidecar's)", "CPU-s",
            "smallget.cpu_s", None, Some("rusts3_sha"), "rust-s3", None),
        row("6", format!("the kernel's file work alone for the {small}: temp file, rename, sidecar, a syncfs per 64 ({FILE_FLOOR}, system CPU)"), "CPU-s",
            "filefloor.sys_s", None, Some("kernel"), "kernel", None),
        row("6", format!("the ledger alone: a pass's redb writes for the {small} at its pace (examples/ledger_floor.rs)"), "CPU-s",
            "smallledger.cpu_s", None, Some("redb"), "redb", None),
        row("6", format!("disk read of the {serve} file (dd bs=4M, {cache})"), "MB/s",
            "dd.mbps", None, Some("dd"), "dd", None),
        row("6", format!("loopback HTTP: nginx serving the {serve} file to curl (= row 5 baseline)"), "MB/s",
            "serve1.mbps", None, ng, "nginx", None),
        row("6", format!("test S3 server alone: curl GET of the {big} object, 1 stream"), "MB/s",
            "s3.mbps", None, Some("curl1"), "curl", None),
        row("6", "test S3 server alone: same object as 4 ranged GETs in parallel", "MB/s",
            "s3.mbps", None, Some("curl4"), "curl ×4", None),
    ]);
    Ok(rows)
}

/// How row 6 names the kernel's file work (the module that measures it).
const FILE_FLOOR: &str = "bench/src/file_floor.rs";

/// The median, with the min–max over runs when `spread` and there are several.
fn cell(values: &Values, key: &str, subject: Option<&str>, spread: bool) -> String {
    let Some(v) = subject.and_then(|s| values.get(&(key.to_owned(), s.to_owned()))) else {
        return "—".to_owned();
    };
    if v.is_empty() {
        return "—".to_owned();
    }
    let mut text = fmt(median(v));
    if spread && v.len() > 1 {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        text.push_str(&format!(" ({}–{})", fmt(Some(min)), fmt(Some(max))));
    }
    text
}

const TABLE_HEAD: [&str; 2] = [
    "| # | measure | unit | r2-sync | baseline | ratio | target | met |",
    "|---|---|---|---:|---:|---:|---|---|",
];

/// The results table (only row `only_num`'s lines when given).
pub fn main_table(values: &Values, meta: &Meta, only_num: Option<&str>) -> Result<Vec<String>, ReportError> {
    let mut out: Vec<String> = TABLE_HEAD.iter().map(|s| (*s).to_owned()).collect();
    for r in rows(meta)? {
        if only_num.is_some_and(|n| n != r.num) {
            continue;
        }
        let ours = med(values, &r.key, r.ours);
        let base = med(values, &r.key, r.base);
        let missing = (r.ours.is_some() && ours.is_none()) || (r.base.is_some() && base.is_none());
        let todo = meta.get(&format!("todo.{}", r.key)).map_or("", String::as_str);
        if missing && !todo.is_empty() {
            let cells = [
                if r.ours.is_some() {
                    "TODO".to_owned()
                } else {
                    "—".to_owned()
                },
                if r.base.is_some() {
                    format!("{}: {}", r.base_name, fmt(base))
                } else {
                    "—".to_owned()
                },
                "—".to_owned(),
            ];
            let target = r.target.map(|t| t.check(None, None).0).unwrap_or_default();
            out.push(format!(
                "| {} | {} | {} | {} | {target} | TODO: {todo} |",
                r.num,
                r.label,
                r.unit,
                cells.join(" | ")
            ));
            continue;
        }
        let ratio_text = match (ours, base) {
            (Some(o), Some(b)) if b != 0.0 => ratio(o / b),
            _ => "—".to_owned(),
        };
        let (target, ok) = r.target.map_or(("context".to_owned(), None), |t| t.check(ours, base));
        let met = match (r.target, ok) {
            (None, _) => "",
            (Some(_), None) => "n/a",
            (Some(_), Some(true)) => "yes",
            (Some(_), Some(false)) => "**no**",
        };
        let base_cell = match r.base {
            Some(_) => format!("{}: {}", r.base_name, cell(values, &r.key, r.base, r.spread)),
            None => "—".to_owned(),
        };
        let ours_cell = match r.ours {
            Some(_) => cell(values, &r.key, r.ours, r.spread),
            None => "—".to_owned(),
        };
        out.push(format!(
            "| {} | {} | {} | {ours_cell} | {base_cell} | {ratio_text} | {target} | {met} |",
            r.num, r.label, r.unit
        ));
    }
    Ok(out)
}

const SECTIONS: [(&str, &str, &[&str]); 6] = [
    ("videos", "1 videos", &["r2sync_c2", "r2sync_c4", "rclone", "bashloop"]),
    (
        "videofloor",
        "1 context: the contract's computing alone",
        &["hashes", "ffprobe", "ffprobe_demux", "ffprobe_min"],
    ),
    ("big", "2 one big object", &["r2sync", "rclone"]),
    ("small", "3 small objects", &["r2sync", "rclone", "bashloop"]),
    (
        "smallget",
        "3 context: GET + hashes alone",
        &["rusts3", "rusts3_sha", "rclone"],
    ),
    ("smallledger", "3 context: the ledger alone", &["redb"]),
];

fn resources_table(values: &Values) -> Vec<String> {
    let mut out = vec![
        "| measure | tool | wall s | CPU s (user+sys) | CPU % of one core | peak RSS MiB | S3 server CPU s \
         | PostgreSQL CPU s |"
            .to_owned(),
        "|---|---|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for (section, label, subjects) in SECTIONS {
        for s in subjects {
            let m = |what: &str| med(values, &format!("{section}.{what}"), Some(s));
            let Some(wall) = m("wall_s") else {
                continue;
            };
            let cpu = m("cpu_s");
            let pct = match cpu {
                Some(cpu) if wall != 0.0 => format!("{:.0}", 100.0 * cpu / wall),
                _ => "—".to_owned(),
            };
            out.push(format!(
                "| {label} | {s} | {} | {} | {pct} | {} | {} | {} |",
                fmt(Some(wall)),
                fmt(cpu),
                fmt(m("rss_mib")),
                fmt(m("s3cpu_s")),
                fmt(m("pgcpu_s"))
            ));
        }
    }
    out
}

fn runs_text(v: &[f64]) -> String {
    v.iter().map(|x| fmt(Some(*x))).collect::<Vec<_>>().join(", ")
}

fn per_run(values: &Values) -> Vec<String> {
    let mut out = vec![
        "| value | tool | runs (in order) |".to_owned(),
        "|---|---|---|".to_owned(),
    ];
    for ((key, subject), v) in values {
        out.push(format!("| {key} | {subject} | {} |", runs_text(v)));
    }
    out
}

/// (measure, unit, key, target limit or None for context)
const LEDGER_ROWS: [(&str, &str, &str, Option<f64>); 10] = [
    (
        "pass overhead with nothing to claim: median `elapsed_ms` of `run`'s passes (\"pass finished\" log line)",
        "ms",
        "ledger.pass_ms",
        Some(20.0),
    ),
    (
        "`GET /metrics` on the health port: median of {req}, a new connection each (curl time_total)",
        "ms",
        "ledger.metrics_ms",
        Some(10.0),
    ),
    (
        "`status` summary: `r2-sync status` (CLI; the ledger is in use, so it asks the running process): \
      median wall time of 10 runs, process start included",
        "ms",
        "ledger.status_cli_ms",
        Some(100.0),
    ),
    (
        "… `GET /status` (the summary the CLI prints) alone: median of {req}",
        "ms",
        "ledger.status_http_ms",
        Some(100.0),
    ),
    (
        "start-up to serving: spawn of `r2-sync run` → first 200 from `/health`",
        "ms",
        "ledger.startup_ms",
        Some(1000.0),
    ),
    (
        "… → first 200 from `/health/deep` (PostgreSQL, bucket, archive, ledger checked)",
        "ms",
        "ledger.deep_ms",
        None,
    ),
    (
        "RSS of `run` through all of the above (VmHWM, the process's peak)",
        "MiB",
        "ledger.rss_mib",
        Some(32.0),
    ),
    ("… VmRSS at the end", "MiB", "ledger.rss_now_mib", None),
    (
        "ledger file (`STATE_DIR/r2-sync.redb`) after the run",
        "MB",
        "ledger.file_mb",
        Some(200.0),
    ),
    ("… per finished entry", "bytes", "ledger.bytes_per_entry", None),
];
pub const LEDGER_BEGIN: &str = "<!-- ledger rows: generated by make bench (bench/, r2-sync-bench); begin -->";
/// The marker files written before the harness moved to Rust carry (still replaced in place).
const LEDGER_BEGIN_BASH: &str = "<!-- ledger rows: generated by scripts/bench.sh (bench/report.py); begin -->";
pub const LEDGER_END: &str = "<!-- ledger rows: end -->";

fn ledger_section(values: &Values, meta: &Meta) -> Result<Vec<String>, ReportError> {
    let mut sizes: Vec<u64> = values
        .keys()
        .filter(|(key, _)| key.starts_with("ledger."))
        .filter_map(|(_, subject)| subject.parse().ok())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let Some(&judged) = sizes.last() else {
        return Ok(Vec::new());
    };
    let req = meta.get("ledger_requests").map_or("?", String::as_str);
    let head = format!(
        "| measure | unit | {} | target | met? |",
        sizes
            .iter()
            .map(|n| format!("{} entries", int_thousands(*n)))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut out = vec![
        LEDGER_BEGIN.to_owned(),
        "## Ledger at scale".to_owned(),
        String::new(),
        format!(
            "{} One run per size; \"met?\" is judged at {} entries.",
            measured_by(meta, "ledger_command")?,
            int_thousands(judged)
        ),
        String::new(),
        head,
        format!("|---|---|{}---|---|", "---:|".repeat(sizes.len())),
    ];
    for (label, unit, key, limit) in LEDGER_ROWS {
        let cells: Vec<String> = sizes
            .iter()
            .map(|n| fmt(med(values, key, Some(&n.to_string()))))
            .collect();
        let (target, met) = match limit {
            None => ("context".to_owned(), ""),
            Some(limit) => (
                format!("≤ {} {unit}", g(limit, 6)),
                match med(values, key, Some(&judged.to_string())) {
                    None => "—",
                    Some(v) if v <= limit => "yes",
                    Some(_) => "**no**",
                },
            ),
        };
        out.push(format!(
            "| {} | {unit} | {} | {target} | {met} |",
            label.replace("{req}", req),
            cells.join(" | ")
        ));
    }
    let passes: Vec<String> = sizes
        .iter()
        .filter_map(|n| {
            meta.get(&format!("ledger.passes.{n}"))
                .map(|p| format!("{}: {p}", int_thousands(*n)))
        })
        .collect();
    let warned: Vec<String> = sizes
        .iter()
        .filter_map(|n| {
            meta.get(&format!("ledger.warned.{n}"))
                .map(|w| format!("{} entries: {w}", int_thousands(*n)))
        })
        .collect();
    let dropped = if meta.get("ledger_cache").map(String::as_str) == Some("cold cache") {
        "dropped"
    } else {
        "not dropped (not permitted)"
    };
    out.extend([
        String::new(),
        "- Set-up per size, untimed: N finished entries written by `state/examples/ledger_scale.rs` \
         (`BUILD_ONLY=1 IN_FLIGHT=0`; nothing in flight) at `STATE_DIR/r2-sync.redb`; N rows in the scratch \
         database's `media` (status `archived`, archive paths as the ledger's, none approved) by \
         `generate_series`, then the README's `CREATE INDEX CONCURRENTLY … idx_media_archive_path` and `ANALYZE`."
            .to_owned(),
        format!(
            "- One `r2-sync run` per size (`SYNC_INTERVAL={}`, LOG_LEVEL=info, \
             archive on the bench's filesystem, state on the work directory's disk), against the test S3 \
             server and the machine's PostgreSQL; health polled every 5 ms from the spawn; then the \
             /metrics and /status GETs, the 10 CLI runs, and the run's passes with nothing to claim \
             (the one at start-up included), all in that one process, whose VmHWM is read last.",
            meta.get("ledger_interval").map_or("?", String::as_str)
        ),
        format!(
            "- Start-up: the page cache was {dropped} \
             just before the spawn, so the ledger and PostgreSQL's files are read from disk as after a reboot; \
             it is the first start on the scratch database, so it includes creating r2-sync's lease table. \
             Start-up figures are one sample each, at 5 ms polling granularity (plus curl's own start)."
        ),
        "- A pass's `elapsed_ms` (whole milliseconds) covers settling owed writes, the claim (through \
         `idx_media_status`: no row is approved) and the lease release; the ledger flush and counts read \
         after it are not in it."
            .to_owned(),
        format!(
            "- Pass `elapsed_ms` per pass, in order: {}.",
            if passes.is_empty() {
                "—".to_owned()
            } else {
                passes.join("; ")
            }
        ),
        format!(
            "- Warnings or errors logged by `run`: {}.",
            if warned.is_empty() {
                "none".to_owned()
            } else {
                warned.join("; ")
            }
        ),
        LEDGER_END.to_owned(),
    ]);
    Ok(out)
}

pub const SERVE_BEGIN: &str = "<!-- serving rows: generated by make bench (bench/, r2-sync-bench); begin -->";
const SERVE_BEGIN_BASH: &str = "<!-- serving rows: generated by scripts/bench.sh (bench/report.py); begin -->";
pub const SERVE_END: &str = "<!-- serving rows: end -->";

fn serve_section(values: &Values, meta: &Meta) -> Result<Vec<String>, ReportError> {
    if !values.keys().any(|(key, _)| key == "serve1.mbps" || key == "range.rps") {
        return Ok(Vec::new());
    }
    let conf: Vec<String> = meta
        .get("nginx_conf_file")
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim_matches('\n').lines().map(str::to_owned).collect())
        .unwrap_or_else(|| vec!["(not recorded)".to_owned()]);
    let mut runs = vec![
        "| value | server | runs (in order) |".to_owned(),
        "|---|---|---|".to_owned(),
    ];
    for key in ["serve1.mbps", "serve1.cpu_per_gb", "range.rps", "range.cpu_per_gb"] {
        for subject in ["r2sync", "nginx"] {
            if let Some(v) = values
                .get(&(key.to_owned(), subject.to_owned()))
                .filter(|v| !v.is_empty())
            {
                runs.push(format!("| {key} | {subject} | {} |", runs_text(v)));
            }
        }
    }
    let q = |k: &str| meta.get(k).map_or("?", String::as_str);
    let mut out = vec![
        SERVE_BEGIN.to_owned(),
        "## Serving (row 5 in detail)".to_owned(),
        String::new(),
        format!(
            "{} {} runs of each pair, \
             alternating; both servers pinned to CPUs {} (taskset), the client (curl, wrk) to CPUs {}. CPU-s/GB: the \
             server process's user+sys CPU seconds (nginx: master and workers) over the run, per 10^9 bytes of body \
             sent. Row 5 of the results table comes from this run.",
            measured_by(meta, "serve_command")?,
            q("serve_runs"),
            q("serve_cpus"),
            q("client_cpus")
        ),
        String::new(),
    ];
    out.extend(main_table(values, meta, Some("5"))?);
    out.push(String::new());
    out.extend(runs);
    out.extend([
        String::new(),
        "nginx's config for these runs:".to_owned(),
        String::new(),
        "```nginx".to_owned(),
    ]);
    out.extend(conf);
    out.extend(["```".to_owned(), SERVE_END.to_owned()]);
    Ok(out)
}

/// `old` with the section between one of `begins` (the first found) and `end` replaced by
/// `section`, or `section` inserted before the resources table (else appended).
pub fn merge_section(old: &str, section: &[String], begins: &[&str], end: &str) -> String {
    let block = section.join("\n") + "\n";
    for begin in begins {
        let Some(b) = old.find(begin) else {
            continue;
        };
        if let Some(e) = old[b + begin.len()..].find(end) {
            let mut stop = b + begin.len() + e + end.len();
            if old[stop..].starts_with('\n') {
                stop += 1;
            }
            return format!("{}{block}{}", &old[..b], &old[stop..]);
        }
    }
    if let Some(at) = old.find("\n## Resources (medians)") {
        let at = at + 1;
        return format!("{}{block}\n{}", &old[..at], &old[at..]);
    }
    format!("{}\n\n{block}", old.trim_end_matches('\n'))
}

/// `old` with the results table's lines of row `num` replaced by `lines` (from another run);
/// None when `old` has no such row.
pub fn merge_rows(old: &str, num: &str, lines: &[String]) -> Option<String> {
    let old: Vec<&str> = old.split('\n').collect();
    let prefix = format!("| {num} |");
    let first = old.iter().position(|l| l.starts_with(&prefix))?;
    let mut new: Vec<&str> = old[..first].to_vec();
    new.extend(lines.iter().map(String::as_str));
    new.extend(old[first..].iter().filter(|l| !l.starts_with(&prefix)));
    Some(new.join("\n"))
}

/// The whole document of a full run.
pub fn document(values: &Values, meta: &Meta) -> Result<(String, Vec<String>), ReportError> {
    let table = main_table(values, meta, None)?;
    let serving = serve_section(values, meta)?;
    let ledger = ledger_section(values, meta)?;
    let notes: Vec<String> = meta
        .iter()
        .filter(|(k, _)| k.starts_with("note"))
        .map(|(_, line)| format!("- {line}"))
        .collect();
    let mut doc = vec![
        "# Benchmarks".to_owned(),
        String::new(),
        format!(
            "Generated by `make bench` (`bench/`, r2-sync-bench) on {}. Not part of the test suite.",
            get(meta, "date")?
        ),
        format!(
            "Each pair ran alternately {} time(s); medians shown; ratio = r2-sync ÷ baseline. \
             MB = 10^6 bytes; MiB = 2^20.",
            get(meta, "runs")?
        ),
        String::new(),
        "## Machine".to_owned(),
        String::new(),
        format!(
            "- CPU: {} — `nproc` = {} (shared; load average at start {})",
            get(meta, "cpu")?,
            get(meta, "nproc")?,
            get(meta, "load")?
        ),
        format!("- memory: {}", get(meta, "mem")?),
        format!("- kernel: {}", get(meta, "kernel")?),
        format!(
            "- disk (archive, temp files, rclone's destination): {}",
            get(meta, "disk")?
        ),
        format!("- versions: {}", get(meta, "versions")?),
        String::new(),
        "## Results".to_owned(),
        String::new(),
    ];
    doc.extend(table.iter().cloned());
    doc.push(String::new());
    for section in [serving, ledger] {
        if !section.is_empty() {
            doc.extend(section);
            doc.push(String::new());
        }
    }
    doc.extend(["## Resources (medians)".to_owned(), String::new()]);
    doc.extend(resources_table(values));
    doc.extend([String::new(), "## Notes".to_owned(), String::new()]);
    doc.extend(notes);
    doc.extend([String::new(), "## Per-run values".to_owned(), String::new()]);
    doc.extend(per_run(values));
    doc.push(String::new());
    Ok((doc.join("\n"), table))
}

/// Reads RESULTS and META, writes (or merges into) OUT; returns what to print.
pub fn write(results: &Path, meta: &Path, out: &Path, only: Only) -> Result<String, ReportError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| ReportError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let (values, meta) = parse(&read(results)?, &read(meta)?, &results.display().to_string())?;
    let write = |text: &str| {
        std::fs::write(out, text).map_err(|source| ReportError::Write {
            path: out.display().to_string(),
            source,
        })
    };
    let old = || match std::fs::read_to_string(out) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportError::Read {
            path: out.display().to_string(),
            source,
        }),
    };
    match only {
        Only::Ledger => {
            let ledger = ledger_section(&values, &meta)?;
            if ledger.is_empty() {
                return Err(ReportError::Nothing("ledger"));
            }
            let old = old()?.unwrap_or_else(|| "# Benchmarks\n".to_owned());
            write(&merge_section(
                &old,
                &ledger,
                &[LEDGER_BEGIN, LEDGER_BEGIN_BASH],
                LEDGER_END,
            ))?;
            Ok(ledger.join("\n"))
        }
        Only::Serve => {
            let serving = serve_section(&values, &meta)?;
            if serving.is_empty() {
                return Err(ReportError::Nothing("serving"));
            }
            let rows = main_table(&values, &meta, Some("5"))?;
            if let Some(merged) = old()?.and_then(|old| merge_rows(&old, "5", &rows[TABLE_HEAD.len()..])) {
                write(&merged)?;
            }
            let old = old()?.unwrap_or_else(|| "# Benchmarks\n".to_owned());
            write(&merge_section(
                &old,
                &serving,
                &[SERVE_BEGIN, SERVE_BEGIN_BASH],
                SERVE_END,
            ))?;
            Ok(serving.join("\n"))
        }
        Only::All => {
            let (doc, table) = document(&values, &meta)?;
            write(&doc)?;
            Ok(table.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Values, Meta) {
        let results = "videos.mbps\tr2sync_c2\t1\t250\nvideos.mbps\tr2sync_c2\t2\t270\nvideos.mbps\trclone\t1\t369\n\
                       big.rss_mib\tr2sync\t1\t22.66\nbig.rss_mib\trclone\t1\t45.4\n\
                       serve1.mbps\tr2sync\t1\t1902\nserve1.mbps\tr2sync\t2\t1252\nserve1.mbps\tr2sync\t3\t1594\n\
                       serve1.mbps\tnginx\t1\t1278\nvideos.wall_s\trclone\t1\t2.8\nvideos.cpu_s\trclone\t1\t4.49\n\
                       ledger.pass_ms\t1000\t1\t2\nledger.pass_ms\t10000\t1\t25\n";
        let meta = "date\t2026-12-06 12:00 UTC\nruns\t2\nnproc\t2\ncpu\tAMD EPYC\nkernel\tLinux\nload\t1 2 3\n\
                    mem\t23.5 GiB\ndisk\t/dev/vda\nversions\tr2-sync 0.1.0\nvideos\t20\nvideo_bytes\t51744893\n\
                    big_bytes\t2147483648\nsmall_files\t2000\nsmall_bytes\t100000\nserve_bytes\t1073741824\n\
                    note02\tsecond\nnote01\tfirst\ntodo.idle.rss_mib\trun exited\n";
        parse(results, meta, "results.tsv").unwrap()
    }

    #[test]
    fn the_results_table_judges_medians_against_targets() {
        let (values, meta) = fixture();
        let table = main_table(&values, &meta, None).unwrap();
        assert_eq!(table[..2], TABLE_HEAD);
        assert_eq!(
            table[2],
            "| 1 | sync 20 × 49.3 MiB videos (ffprobe on each), SYNC_CONCURRENCY=2 (default) | MB/s | 260 | rclone: 369 \
             | 0.70× | ≥ 1.3× | **no** |"
        );
        let rss = table.iter().find(|l| l.contains("peak RSS (Maximum")).unwrap();
        assert!(
            rss.ends_with("| 22.7 | rclone: 45.4 | 0.50× | ≤ 0.5× and < 64 MiB | yes |"),
            "{rss}"
        );
        let serve = table.iter().find(|l| l.starts_with("| 5 | serve a 1 GiB")).unwrap();
        assert!(
            serve.contains("| 1,594 (1,252–1,902) | nginx: 1,278 | 1.25× | ≥ 0.9× | yes |"),
            "{serve}"
        );
        let idle = table.iter().find(|l| l.contains("idle RSS")).unwrap();
        assert!(
            idle.ends_with("| TODO | — | — | < 20 MiB | TODO: run exited |"),
            "{idle}"
        );
        let missing = table.iter().find(|l| l.starts_with("| 4 |")).unwrap();
        assert!(missing.ends_with("| — | rclone: — | — | ≤ 5 % | n/a |"), "{missing}");
        assert!(
            table.iter().all(|l| l.matches('|').count() == 9),
            "eight columns in every row"
        );
        assert_eq!(main_table(&values, &meta, Some("5")).unwrap().len(), 2 + 5);
    }

    #[test]
    fn the_document_keeps_its_sections_in_order() {
        let (values, meta) = fixture();
        let (doc, table) = document(&values, &meta).unwrap();
        let headings: Vec<&str> = doc.lines().filter(|l| l.starts_with("## ")).collect();
        assert_eq!(
            headings,
            [
                "## Machine",
                "## Results",
                "## Serving (row 5 in detail)",
                "## Ledger at scale",
                "## Resources (medians)",
                "## Notes",
                "## Per-run values"
            ]
        );
        assert!(doc.contains("- first\n- second\n"), "notes sorted by key");
        assert!(doc.contains("| 1 videos | rclone | 2.80 | 4.49 | 160 | — | — | — |"));
        assert!(
            doc.contains("| serve1.mbps | r2sync | 1,902, 1,252, 1,594 |"),
            "runs in order"
        );
        assert!(doc.contains("| measure | unit | 1,000 entries | 10,000 entries | target | met? |"));
        assert!(
            doc.contains("| ms | 2.00 | 25.0 | ≤ 20 ms | **no** |"),
            "judged at the largest size"
        );
        assert!(doc.contains("(not recorded)"), "no nginx config file");
        assert!(doc.ends_with("|\n"));
        assert_eq!(table.len(), 2 + 34);
    }

    #[test]
    fn sections_are_replaced_inserted_or_appended() {
        let section = vec![LEDGER_BEGIN.to_owned(), "new".to_owned(), LEDGER_END.to_owned()];
        let block = format!("{LEDGER_BEGIN}\nnew\n{LEDGER_END}\n");
        let old = format!("# B\n\n{LEDGER_BEGIN}\nold\n{LEDGER_END}\n\n## Resources (medians)\n");
        assert_eq!(
            merge_section(&old, &section, &[LEDGER_BEGIN], LEDGER_END),
            format!("# B\n\n{block}\n## Resources (medians)\n")
        );
        assert_eq!(
            merge_section(
                "# B\n\n## Resources (medians)\nx\n",
                &section,
                &[LEDGER_BEGIN],
                LEDGER_END
            ),
            format!("# B\n\n{block}\n## Resources (medians)\nx\n")
        );
        assert_eq!(
            merge_section("# B\n\n\n", &section, &[LEDGER_BEGIN], LEDGER_END),
            format!("# B\n\n{block}")
        );
        let unterminated = format!("# B\n{LEDGER_BEGIN}\nold\n");
        assert_eq!(
            merge_section(&unterminated, &section, &[LEDGER_BEGIN], LEDGER_END),
            format!("# B\n{LEDGER_BEGIN}\nold\n\n{block}")
        );
    }

    #[test]
    fn sections_written_by_the_bash_harness_are_replaced_in_place() {
        let section = vec![LEDGER_BEGIN.to_owned(), "new".to_owned(), LEDGER_END.to_owned()];
        let old = format!("# B\n{LEDGER_BEGIN_BASH}\nold\n{LEDGER_END}\ntail\n");
        assert_eq!(
            merge_section(&old, &section, &[LEDGER_BEGIN, LEDGER_BEGIN_BASH], LEDGER_END),
            format!("# B\n{LEDGER_BEGIN}\nnew\n{LEDGER_END}\ntail\n")
        );
        let benchmarks = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md")).unwrap();
        for (begins, end) in [
            ([LEDGER_BEGIN, LEDGER_BEGIN_BASH], LEDGER_END),
            ([SERVE_BEGIN, SERVE_BEGIN_BASH], SERVE_END),
        ] {
            let section = vec![begins[0].to_owned(), "new".to_owned(), end.to_owned()];
            let merged = merge_section(&benchmarks, &section, &begins, end);
            assert_eq!(
                merged.matches(end).count(),
                1,
                "BENCHMARKS.md's section is found: {end}"
            );
            assert!(merged.contains("\nnew\n"));
        }
    }

    #[test]
    fn a_row_s_lines_are_replaced_where_they_first_appear() {
        let old = "| 4 | a |\n| 5 | old1 |\n| 5 | old2 |\n| 6 | b |\n\n| 5 | in a section |\n";
        let new = merge_rows(old, "5", &["| 5 | new |".to_owned()]).unwrap();
        assert_eq!(new, "| 4 | a |\n| 5 | new |\n| 6 | b |\n\n");
        assert_eq!(merge_rows("| 4 | a |\n", "5", &[]), None);
    }

    #[test]
    fn bad_results_name_their_line() {
        let err = parse("a\tb\t1\t2\nbad line\n", "", "r.tsv").unwrap_err();
        assert_eq!(err.to_string(), "r.tsv, line 2: not four tab-separated fields");
        assert!(parse("a\tb\t1\tx\n", "", "r.tsv").is_err());
        let (values, meta) = parse("", "", "r.tsv").unwrap();
        assert!(matches!(main_table(&values, &meta, None), Err(ReportError::Missing(k)) if k == "videos"));
    }
}
