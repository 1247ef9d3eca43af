#!/usr/bin/env python3
"""Turns the harness's raw results into the markdown table (scripts/bench.sh).

    report.py [--only-ledger] RESULTS_TSV META_TSV OUT_MD

RESULTS_TSV lines: key <TAB> subject <TAB> run <TAB> value (one measurement of one run).
META_TSV lines:    key <TAB> value (machine description and settings).
Writes OUT_MD (table, resources, notes, per-run values) and prints the main table.
Medians over runs; ratio = r2-sync median / baseline median.
--only-ledger (a `BENCH_ONLY=ledger` run): only the ledger section of an existing OUT_MD is
replaced (or inserted before its resources table); the rest of the file is kept as it is.
--only-serve (a `BENCH_ONLY=serve` run): the same for the serving section, and row 5's lines of
the results table are replaced by this run's.
"""
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Optional


def load(results_path: str, meta_path: str):
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(results_path) as f:
        for line in f:
            if line.strip():
                key, subject, _run, value = line.rstrip("\n").split("\t")
                values[(key, subject)].append(float(value))
    meta: dict[str, str] = {}
    with open(meta_path) as f:
        for line in f:
            if "\t" in line:
                k, v = line.rstrip("\n").split("\t", 1)
                meta[k] = v
    return values, meta


def fmt(x: Optional[float]) -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


@dataclass
class Row:
    num: str
    label: str
    unit: str
    key: str
    ours: Optional[str]  # subject name of r2-sync's value, None for context rows
    base: Optional[str]  # subject name of the baseline's value
    base_name: str
    # (ours, base) -> (target text, met?) ; None when the row has no target
    target: Optional[Callable[[Optional[float], Optional[float]], tuple[str, Optional[bool]]]] = None
    # Show the min–max over runs beside the median (rows whose runs are short and noisy).
    spread: bool = False


def ratio_at_least(t: float):
    def check(ours, base):
        ok = None if ours is None or not base else ours / base >= t
        return f"≥ {t:g}×", ok
    return check


def at_most(limit: float, unit: str):
    def check(ours, _base):
        return f"≤ {limit:g} {unit}", None if ours is None else ours <= limit
    return check


def below(limit: float, unit: str):
    def check(ours, _base):
        return f"< {limit:g} {unit}", None if ours is None else ours < limit
    return check


def rss_target(ratio: float, limit: float):
    def check(ours, base):
        ok = None if ours is None or not base else (ours / base <= ratio and ours < limit)
        return f"≤ {ratio:g}× and < {limit:g} MiB", ok
    return check


def rows(m: dict[str, str]) -> list[Row]:
    videos = f"{m['videos']} × {human_bytes(int(m['video_bytes']))} videos"
    big = human_bytes(int(m["big_bytes"]))
    small = f"{int(m['small_files']):,} × {int(m['small_bytes']) // 1000} KB objects"
    serve = human_bytes(int(m["serve_bytes"]))
    cache = m.get("dd_cache", "?")
    return [
        Row("1", f"sync {videos} (ffprobe on each), SYNC_CONCURRENCY=2 (default)", "MB/s",
            "videos.mbps", "r2sync_c2", "rclone", "rclone", ratio_at_least(1.3)),
        Row("1", "… same, SYNC_CONCURRENCY=4", "MB/s",
            "videos.mbps", "r2sync_c4", "rclone", "rclone", ratio_at_least(1.3)),
        *bash_loop_rows("1", "videos", "same (r2-sync: SYNC_CONCURRENCY=2)", "r2sync_c2"),
        Row("2", f"sync one {big} object (random data, VALIDATE_MEDIA=false: not media)", "MB/s",
            "big.mbps", "r2sync", "rclone", "rclone", ratio_at_least(1.0)),
        Row("2", f"… peak RSS (Maximum resident set size)", "MiB",
            "big.rss_mib", "r2sync", "rclone", "rclone", rss_target(0.5, 64)),
        Row("3", f"sync {small} (VALIDATE_MEDIA=false, BATCH_SIZE={m['small_files']})", "files/s",
            "small.fps", "r2sync", "rclone", "rclone", ratio_at_least(1.0)),
        *bash_loop_rows("3", "small", "same (VALIDATE_MEDIA=false in both)", "r2sync"),
        Row("4", f"bytes downloaded again after SIGKILL at ≥ 50 % of the {big} object", "% of object",
            "resume.pct", "r2sync", "rclone", "rclone", at_most(5, "%")),
        Row("5", f"serve a {serve} file to one client (curl -o /dev/null); median (min–max)", "MB/s",
            "serve1.mbps", "r2sync", "nginx", "nginx", ratio_at_least(0.9), spread=True),
        Row("5", "… server CPU (user+sys) per GB of body sent", "CPU-s/GB",
            "serve1.cpu_per_gb", "r2sync", "nginx", "nginx", spread=True),
        Row("5", "1 MiB ranged GETs at random offsets, 64 connections, JWT on each (wrk); median (min–max)", "req/s",
            "range.rps", "r2sync", "nginx", "nginx", ratio_at_least(0.8), spread=True),
        Row("5", "… server CPU (user+sys) per GB of body sent", "CPU-s/GB",
            "range.cpu_per_gb", "r2sync", "nginx", "nginx", spread=True),
        Row("5", "idle RSS of `r2-sync run` (VmRSS after 5 s idle)", "MiB",
            "idle.rss_mib", "r2sync", None, "", below(20, "MiB")),
        Row("6", f"MD5 + SHA-256 alone of the {videos} (examples/hash_floor.rs, page cache)", "CPU-s",
            "videofloor.cpu_s", None, "hashes", "hashes"),
        Row("6", f"ffprobe alone on each of the {videos}, r2-sync's arguments", "CPU-s",
            "videofloor.cpu_s", None, "ffprobe", "ffprobe"),
        Row("6", f"validation CPU per file on the {videos}: what r2-sync runs on them (ffprobe-demux "
            "settles an MP4 alone: FFPROBE_DEMUX_PATH, scripts/build-ffprobe.sh --demux-only) vs Debian's "
            "full /usr/bin/ffprobe", "CPU ms/file",
            "videofloor.ms_per_file", "ffprobe_demux", "ffprobe", "Debian ffprobe", at_most(10, "ms")),
        Row("6", "… the minimal full build (FFPROBE_PATH: what r2-sync runs where ffprobe-demux cannot "
            "settle a file) vs Debian's", "CPU ms/file",
            "videofloor.ms_per_file", "ffprobe_min", "ffprobe", "Debian ffprobe"),
        Row("6", f"S3 client alone, {small}: GET + MD5 of each, no disk, 16 at once (r2-sync's own code: examples/get_floor.rs)", "CPU-s",
            "smallget.cpu_s", None, "rusts3", "rust-s3"),
        Row("6", f"… the same by rclone (md5sum --download --checkers 16)", "CPU-s",
            "smallget.cpu_s", None, "rclone", "rclone"),
        Row("6", f"… with SHA-256 of each body too (the sidecar's)", "CPU-s",
            "smallget.cpu_s", None, "rusts3_sha", "rust-s3"),
        Row("6", f"the kernel's file work alone for the {small}: temp file, rename, sidecar, a syncfs per 64 (bench/file_floor.py, system CPU)", "CPU-s",
            "filefloor.sys_s", None, "kernel", "kernel"),
        Row("6", f"the ledger alone: a pass's redb writes for the {small} at its pace (examples/ledger_floor.rs)", "CPU-s",
            "smallledger.cpu_s", None, "redb", "redb"),
        Row("6", f"disk read of the {serve} file (dd bs=4M, {cache})", "MB/s",
            "dd.mbps", None, "dd", "dd"),
        Row("6", f"loopback HTTP: nginx serving the {serve} file to curl (= row 5 baseline)", "MB/s",
            "serve1.mbps", None, "nginx", "nginx"),
        Row("6", f"test S3 server alone: curl GET of the {big} object, 1 stream", "MB/s",
            "s3.mbps", None, "curl1", "curl"),
        Row("6", f"test S3 server alone: same object as 4 ranged GETs in parallel", "MB/s",
            "s3.mbps", None, "curl4", "curl ×4"),
    ]


BASH_LOOP = "bash loop"


def bash_loop_rows(num: str, section: str, what: str, ours: str) -> list[Row]:
    """Row NUM against the bash + rclone loop r2-sync replaces (bench/bash-loop.sh), and the
    CPU each tool spends per GB it archives (rclone: copies). Context: no targets."""
    return [
        Row(num, f"… {what}, vs the bash + rclone loop (bench/bash-loop.sh: psql, then rclone copyto, "
            "ffprobe, mv, jq, psql, rclone deletefile per file, one at a time)", "files/s",
            f"{section}.fps", ours, "bashloop", BASH_LOOP),
        Row(num, "… CPU (user+sys of the whole process tree)", "CPU-s",
            f"{section}.cpu_s", ours, "bashloop", BASH_LOOP),
        Row(num, "… peak RSS (largest process of the tree)", "MiB",
            f"{section}.rss_mib", ours, "bashloop", BASH_LOOP),
        Row(num, "… CPU-s per GB archived, vs rclone copy (per GB copied)", "CPU-s/GB",
            f"{section}.cpu_per_gb", ours, "rclone", "rclone"),
        Row(num, "… CPU-s per GB archived, vs the bash + rclone loop", "CPU-s/GB",
            f"{section}.cpu_per_gb", ours, "bashloop", BASH_LOOP),
    ]


def median(values, key, subject) -> Optional[float]:
    v = values.get((key, subject)) if subject else None
    return statistics.median(v) if v else None


def cell(values, key, subject, spread: bool) -> str:
    """The median, with the min–max over runs when `spread` and there are several."""
    v = values.get((key, subject)) if subject else None
    if not v:
        return "—"
    text = fmt(statistics.median(v))
    if spread and len(v) > 1:
        text += f" ({fmt(min(v))}–{fmt(max(v))})"
    return text


def fmt_ratio(r: float) -> str:
    """Two decimals; two significant digits below 0.01 (the bash loop's rows), not 0.00."""
    return f"{r:.2f}×" if r >= 0.01 or r == 0 else f"{r:.2g}×"


TABLE_HEAD = [
    "| # | measure | unit | r2-sync | baseline | ratio | target | met |",
    "|---|---|---|---:|---:|---:|---|---|",
]


def main_table(values, meta, only_num: Optional[str] = None) -> list[str]:
    out = list(TABLE_HEAD)
    for r in rows(meta):
        if only_num is not None and r.num != only_num:
            continue
        ours = median(values, r.key, r.ours)
        base = median(values, r.key, r.base)
        missing = (r.ours and ours is None) or (r.base and base is None)
        todo = meta.get(f"todo.{r.key}", "")
        if missing and todo:
            cells = ["TODO" if r.ours else "—",
                     f"{r.base_name}: {fmt(base)}" if r.base else "—", "—"]
            target = r.target(None, None)[0] if r.target else ""
            out.append(f"| {r.num} | {r.label} | {r.unit} | {' | '.join(cells)} | {target} | TODO: {todo} |")
            continue
        ratio = fmt_ratio(ours / base) if ours is not None and base else "—"
        target, ok = r.target(ours, base) if r.target else ("context", None)
        met = "" if not r.target else ("n/a" if ok is None else ("yes" if ok else "**no**"))
        base_cell = f"{r.base_name}: {cell(values, r.key, r.base, r.spread)}" if r.base else "—"
        ours_cell = cell(values, r.key, r.ours, r.spread) if r.ours else "—"
        out.append(f"| {r.num} | {r.label} | {r.unit} | {ours_cell} | {base_cell} | {ratio} | {target} | {met} |")
    return out


SECTIONS = [
    ("videos", "1 videos", ["r2sync_c2", "r2sync_c4", "rclone", "bashloop"]),
    ("videofloor", "1 context: the contract's computing alone", ["hashes", "ffprobe", "ffprobe_demux", "ffprobe_min"]),
    ("big", "2 one big object", ["r2sync", "rclone"]),
    ("small", "3 small objects", ["r2sync", "rclone", "bashloop"]),
    ("smallget", "3 context: GET + hashes alone", ["rusts3", "rusts3_sha", "rclone"]),
    ("smallledger", "3 context: the ledger alone", ["redb"]),
]


def resources_table(values) -> list[str]:
    out = [
        "| measure | tool | wall s | CPU s (user+sys) | CPU % of one core | peak RSS MiB | S3 server CPU s "
        "| PostgreSQL CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for section, label, subjects in SECTIONS:
        for s in subjects:
            wall = median(values, f"{section}.wall_s", s)
            if wall is None:
                continue
            cpu = median(values, f"{section}.cpu_s", s)
            rss = median(values, f"{section}.rss_mib", s)
            s3 = median(values, f"{section}.s3cpu_s", s)
            pg = median(values, f"{section}.pgcpu_s", s)
            pct = f"{100 * cpu / wall:.0f}" if cpu is not None and wall else "—"
            out.append(f"| {label} | {s} | {fmt(wall)} | {fmt(cpu)} | {pct} | {fmt(rss)} | {fmt(s3)} | {fmt(pg)} |")
    return out


def per_run(values) -> list[str]:
    out = ["| value | tool | runs (in order) |", "|---|---|---|"]
    for (key, subject), v in sorted(values.items()):
        out.append(f"| {key} | {subject} | {', '.join(fmt(x) for x in v)} |")
    return out


# (measure, unit, key, target limit or None for context)
LEDGER_ROWS = [
    ("pass overhead with nothing to claim: median `elapsed_ms` of `run`'s passes (\"pass finished\" log line)",
     "ms", "ledger.pass_ms", 20),
    ("`GET /metrics` on the health port: median of {req}, a new connection each (curl time_total)",
     "ms", "ledger.metrics_ms", 10),
    ("`status` summary: `r2-sync status` (CLI; the ledger is in use, so it asks the running process): "
     "median wall time of 10 runs, process start included", "ms", "ledger.status_cli_ms", 100),
    ("… `GET /status` (the summary the CLI prints) alone: median of {req}", "ms", "ledger.status_http_ms", 100),
    ("start-up to serving: spawn of `r2-sync run` → first 200 from `/health`", "ms", "ledger.startup_ms", 1000),
    ("… → first 200 from `/health/deep` (PostgreSQL, bucket, archive, ledger checked)", "ms", "ledger.deep_ms", None),
    ("RSS of `run` through all of the above (VmHWM, the process's peak)", "MiB", "ledger.rss_mib", 32),
    ("… VmRSS at the end", "MiB", "ledger.rss_now_mib", None),
    ("ledger file (`STATE_DIR/r2-sync.redb`) after the run", "MB", "ledger.file_mb", 200),
    ("… per finished entry", "bytes", "ledger.bytes_per_entry", None),
]
LEDGER_BEGIN = "<!-- ledger rows: generated by scripts/bench.sh (bench/report.py); begin -->"
LEDGER_END = "<!-- ledger rows: end -->"


def ledger_section(values, meta) -> list[str]:
    sizes = sorted({int(subject) for (key, subject) in values if key.startswith("ledger.")})
    if not sizes:
        return []
    judged = sizes[-1]
    req = meta.get("ledger_requests", "?")
    head = "| measure | unit | " + " | ".join(f"{n:,} entries" for n in sizes) + " | target | met? |"
    out = [
        LEDGER_BEGIN,
        "## Ledger at scale",
        "",
        f"Measured by `{meta.get('ledger_command', 'make bench')}` on {meta['date']}: "
        f"{meta['cpu']}, `nproc` = {meta['nproc']} (shared; load average at start {meta['load']}), "
        f"{meta['mem']}; {meta['versions']}. One run per size; \"met?\" is judged at {judged:,} entries.",
        "",
        head,
        "|---|---|" + "---:|" * len(sizes) + "---|---|",
    ]
    for label, unit, key, limit in LEDGER_ROWS:
        cells = [fmt(median(values, key, str(n))) for n in sizes]
        if limit is None:
            target, met = "context", ""
        else:
            v = median(values, key, str(judged))
            target = f"≤ {limit:g} {unit}"
            met = "—" if v is None else ("yes" if v <= limit else "**no**")
        out.append(f"| {label.format(req=req)} | {unit} | {' | '.join(cells)} | {target} | {met} |")
    passes = [f"{int(n):,}: {meta[f'ledger.passes.{n}']}" for n in sizes if f"ledger.passes.{n}" in meta]
    warned = [f"{n:,} entries: {meta[f'ledger.warned.{n}']}" for n in sizes if f"ledger.warned.{n}" in meta]
    out += [
        "",
        "- Set-up per size, untimed: N finished entries written by `state/examples/ledger_scale.rs` "
        "(`BUILD_ONLY=1 IN_FLIGHT=0`; nothing in flight) at `STATE_DIR/r2-sync.redb`; N rows in the scratch "
        "database's `media` (status `archived`, archive paths as the ledger's, none approved) by "
        "`generate_series`, then the README's `CREATE INDEX CONCURRENTLY … idx_media_archive_path` and `ANALYZE`.",
        f"- One `r2-sync run` per size (`SYNC_INTERVAL={meta.get('ledger_interval', '?')}`, LOG_LEVEL=info, "
        "archive on the bench's filesystem, state on the work directory's disk), against the test S3 "
        "server and the machine's PostgreSQL; health polled every 5 ms from the spawn; then the "
        "/metrics and /status GETs, the 10 CLI runs, and the run's passes with nothing to claim "
        "(the one at start-up included), all in that one process, whose VmHWM is read last.",
        f"- Start-up: the page cache was {'dropped' if meta.get('ledger_cache') == 'cold cache' else 'not dropped (not permitted)'} "
        "just before the spawn, so the ledger and PostgreSQL's files are read from disk as after a reboot; "
        "it is the first start on the scratch database, so it includes creating r2-sync's lease table. "
        "Start-up figures are one sample each, at 5 ms polling granularity (plus curl's own start).",
        "- A pass's `elapsed_ms` (whole milliseconds) covers settling owed writes, the claim (through "
        "`idx_media_status`: no row is approved) and the lease release; the ledger flush and counts read "
        "after it are not in it.",
        "- Pass `elapsed_ms` per pass, in order: " + ("; ".join(passes) if passes else "—") + ".",
        "- Warnings or errors logged by `run`: " + ("; ".join(warned) if warned else "none") + ".",
        LEDGER_END,
    ]
    return out


SERVE_BEGIN = "<!-- serving rows: generated by scripts/bench.sh (bench/report.py); begin -->"
SERVE_END = "<!-- serving rows: end -->"


def serve_section(values, meta) -> list[str]:
    if not any(key in ("serve1.mbps", "range.rps") for (key, _s) in values):
        return []
    conf_path = meta.get("nginx_conf_file")
    try:
        with open(conf_path) as f:
            conf = f.read().strip("\n").splitlines()
    except (OSError, TypeError):
        conf = ["(not recorded)"]
    keys = ["serve1.mbps", "serve1.cpu_per_gb", "range.rps", "range.cpu_per_gb"]
    runs = ["| value | server | runs (in order) |", "|---|---|---|"]
    for key in keys:
        for subject in ("r2sync", "nginx"):
            v = values.get((key, subject))
            if v:
                runs.append(f"| {key} | {subject} | {', '.join(fmt(x) for x in v)} |")
    return [
        SERVE_BEGIN,
        "## Serving (row 5 in detail)",
        "",
        f"Measured by `{meta.get('serve_command', 'make bench')}` on {meta['date']}: "
        f"{meta['cpu']}, `nproc` = {meta['nproc']} (shared; load average at start {meta['load']}), "
        f"{meta['mem']}; {meta['versions']}. {meta.get('serve_runs', '?')} runs of each pair, alternating; "
        f"both servers pinned to CPUs {meta.get('serve_cpus', '?')} (taskset), the client (curl, wrk) "
        f"to CPUs {meta.get('client_cpus', '?')}. CPU-s/GB: the server process's user+sys CPU seconds "
        "(nginx: master and workers) over the run, per 10^9 bytes of body sent. Row 5 of the results "
        "table comes from this run.",
        "",
        *main_table(values, meta, only_num="5"),
        "",
        *runs,
        "",
        "nginx's config for these runs:",
        "",
        "```nginx",
        *conf,
        "```",
        SERVE_END,
    ]


def merge_section(out_path: str, section: list[str], begin: str, end: str) -> None:
    """Replaces the section between `begin` and `end` in OUT_MD, or inserts it before the
    resources table."""
    try:
        with open(out_path) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Benchmarks\n"
    block = "\n".join(section) + "\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end) + "\n?", re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old, count=1)
    elif "\n## Resources (medians)" in old:
        at = old.index("\n## Resources (medians)") + 1
        new = old[:at] + block + "\n" + old[at:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(out_path, "w") as f:
        f.write(new)


def merge_rows(out_path: str, num: str, lines: list[str]) -> None:
    """Replaces the results table's lines of row `num` by `lines` (from another run)."""
    try:
        with open(out_path) as f:
            old = f.read().split("\n")
    except FileNotFoundError:
        return
    prefix = f"| {num} |"
    at = [i for i, line in enumerate(old) if line.startswith(prefix)]
    if not at:
        return
    new = old[:at[0]] + lines + [line for line in old[at[0]:] if not line.startswith(prefix)]
    with open(out_path, "w") as f:
        f.write("\n".join(new))


def main() -> int:
    args = sys.argv[1:]
    only_ledger = "--only-ledger" in args
    only_serve = "--only-serve" in args
    args = [a for a in args if a not in ("--only-ledger", "--only-serve")]
    results_path, meta_path, out_path = args[:3]
    values, meta = load(results_path, meta_path)
    ledger = ledger_section(values, meta)
    if only_ledger:
        if not ledger:
            print("report: no ledger results", file=sys.stderr)
            return 1
        merge_section(out_path, ledger, LEDGER_BEGIN, LEDGER_END)
        print("\n".join(ledger))
        return 0
    serving = serve_section(values, meta)
    if only_serve:
        if not serving:
            print("report: no serving results", file=sys.stderr)
            return 1
        merge_rows(out_path, "5", main_table(values, meta, only_num="5")[len(TABLE_HEAD):])
        merge_section(out_path, serving, SERVE_BEGIN, SERVE_END)
        print("\n".join(serving))
        return 0
    table = main_table(values, meta)
    notes = [line for k, line in sorted(meta.items()) if k.startswith("note")]
    doc = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`scripts/bench.sh`) on {meta['date']}. Not part of the test suite.",
        f"Each pair ran alternately {meta['runs']} time(s); medians shown; ratio = r2-sync ÷ baseline. "
        "MB = 10^6 bytes; MiB = 2^20.",
        "",
        "## Machine",
        "",
        f"- CPU: {meta['cpu']} — `nproc` = {meta['nproc']} (shared; load average at start {meta['load']})",
        f"- memory: {meta['mem']}",
        f"- kernel: {meta['kernel']}",
        f"- disk (archive, temp files, rclone's destination): {meta['disk']}",
        f"- versions: {meta['versions']}",
        "",
        "## Results",
        "",
        *table,
        "",
        *([*serving, ""] if serving else []),
        *([*ledger, ""] if ledger else []),
        "## Resources (medians)",
        "",
        *resources_table(values),
        "",
        "## Notes",
        "",
        *[f"- {n}" for n in notes],
        "",
        "## Per-run values",
        "",
        *per_run(values),
        "",
    ]
    with open(out_path, "w") as f:
        f.write("\n".join(doc))
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
