//! The benchmark harness (`make bench`; issues 6 and 17). Never part of the test suite.
//!
//! Measures r2-sync against the tools it replaces, on this machine: rclone for syncing (from
//! the same test S3 server the tests use, release build) and nginx for serving. Builds the
//! release binaries, starts the S3 server on a free port with a temp root, creates a scratch
//! PostgreSQL database from schema/backend.sql (the rig the tests share: tests/rig), generates
//! the data, runs each pair alternately BENCH_RUNS times, and prints one markdown table of
//! medians and ratios, also written (with the machine's description) to BENCHMARKS.md.
//!
//! Rows 1 and 3 have a second baseline: bench/bash-loop.sh, the bash + rclone service r2-sync
//! replaces (what users run today), rebuilt from the workflow in the original plan (psql
//! SELECT; per row rclone copyto, Debian's /usr/bin/ffprobe, mv, a jq sidecar, psql UPDATE +
//! audit INSERT, rclone deletefile; one file at a time; its header says where each step comes
//! from). It runs on the same rows and re-uploaded objects as r2-sync, and the same checks
//! follow every pass of both (verify_archive: rows archived with audit rows, files and
//! sidecars in the archive, objects gone from the bucket). It is slow by design: two rclone
//! processes a file cost ~0.3 CPU-s, so row 3's 2,000 objects take it 10-20 minutes a run.
//!
//! r2-sync's timed passes use the two minimal static ffprobes the image ships (FFPROBE_PATH
//! and FFPROBE_DEMUX_PATH: the paths scripts/build-ffprobe.sh [--demux-only] prints, built and
//! cached under target/ffprobe the first time, a few minutes each); row 6 gives their CPU per
//! file beside Debian's full ffprobe.
//!
//! Settings (environment):
//!   BENCH_RUNS=3          runs of each pair
//!   BENCH_LOOP_RUNS=1     of those runs, how many also time the bash + rclone loop (row 3
//!                         takes it ~10 minutes a run: the loop's own spread is not the point)
//!   BENCH_VIDEOS=20       ~50 MB videos for row 1
//!   BENCH_BIG_MIB=2048    the big object of rows 2 and 4
//!   BENCH_SMALL_FILES=2000  100 KB objects for row 3
//!   BENCH_SERVE_MIB=1024  the file served in row 5
//!   BENCH_WRK_SECS=10     duration of each wrk run
//!   BENCH_SERVE_RUNS=7    runs of each serving pair (row 5: short and noisy, so more than
//!                         BENCH_RUNS; the report shows the median and the min–max spread)
//!   BENCH_SERVE_PERF=FILE  after the serving runs, one more ranged run of r2-sync (not
//!                         recorded) under perf record -g, written to FILE (perf report -i FILE)
//!   BENCH_SERVE_CPUS=0    the CPU set (taskset -c) both servers of row 5 are pinned to; the
//!                         client (curl, wrk) runs on the other CPUs (BENCH_CLIENT_CPUS, by
//!                         default every CPU not in the set, or the same set on one CPU)
//!   BENCH_LEDGER_ENTRIES="10000 1000000"  ledger sizes for the ledger rows (N finished
//!                         entries in the ledger, N archived rows in PostgreSQL)
//!   BENCH_ONLY="videos big small resume serve context ledger"  a subset, for working on the
//!                         harness; BENCH_ONLY=ledger alone updates only the ledger section of
//!                         BENCH_OUT and keeps the rest of the file; BENCH_ONLY=serve alone, the
//!                         serving section and row 5 of the results table
//!   BENCH_OUT=BENCHMARKS.md
//!   BENCH_SKIP_BUILD=1    use the binaries already in target/release
//!   BENCH_R2_ENV="SYNC_CONCURRENCY=8"   extra settings for every timed r2-sync pass
//!   BENCH_R2_WRAP="strace -f -c -o /tmp/r2.strace"   a profiler to run r2-sync under
//!   BENCH_FS=xfs          filesystem for the archive and rclone's destination: a fresh one in a
//!                         loop-mounted image on the same disk (xfs, ext4), or "none" for the
//!                         work directory's own
//!
//! Everything started here is stopped, the scratch database dropped and the temp dir removed
//! on exit, on failure and on Ctrl-C.
//!
//! `r2-sync-bench report [--only-ledger|--only-serve] RESULTS_TSV META_TSV OUT_MD` writes the
//! report of a run's raw results again (the work directory's results.tsv and meta.tsv).

mod cleanup;
mod context;
mod db;
mod file_floor;
mod harness;
mod kill_at;
mod ledger;
mod machine;
mod numfmt;
mod procfs;
mod report;
mod serve;
mod settings;
mod sync_rows;
mod verify_archive;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use r2_sync_test_rig::pg::Postgres;
use tokio::runtime::Handle;

use crate::cleanup::Shared;
use crate::harness::{say, BenchError, Result};
use crate::report::Only;
use crate::settings::Settings;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("report") {
        return report_command(&args[1..]);
    }
    if !args.is_empty() {
        eprintln!("usage: r2-sync-bench (settings in BENCH_* variables) | r2-sync-bench report [--only-ledger|--only-serve] RESULTS META OUT");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: FAILED: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let clean = Shared::default();
    let pg = Postgres::from_env();
    let stopping = Arc::new(tokio::sync::Mutex::new(()));
    rt.spawn(on_signal(clean.clone(), pg.clone(), Arc::clone(&stopping)));
    let result = bench(rt.handle(), &clean);
    // A signal's clean-up under way (which fails whatever the bench was doing: its database is
    // dropped) ends the process itself once done: wait for it rather than exit half-way.
    let _stopping = stopping.blocking_lock();
    for e in rt.block_on(clean.take().run(&pg)) {
        eprintln!("bench: clean-up: {e}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM: clean up, then exit 130 or 143.
async fn on_signal(clean: Shared, pg: Postgres, stopping: Arc<tokio::sync::Mutex<()>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        eprintln!("bench: cannot catch SIGINT and SIGTERM; Ctrl-C would leave the set-up behind");
        return;
    };
    let code = tokio::select! {
        _ = int.recv() => 130,
        _ = term.recv() => 143,
    };
    let _held = stopping.lock().await;
    for e in clean.take().run(&pg).await {
        eprintln!("bench: clean-up: {e}");
    }
    std::process::exit(code);
}

fn bench(handle: &Handle, clean: &Shared) -> Result<()> {
    let s = Settings::from_vars(|name| std::env::var(name).ok())?;
    let p = harness::prelude(&s, clean)?;
    let pg = Postgres::from_env();
    let server_version = handle.block_on(async {
        let c = pg.connect("postgres").await?;
        let rows =
            c.simple_query("SHOW server_version")
                .await
                .map_err(|source| r2_sync_test_rig::pg::PgError::Sql {
                    what: "SHOW server_version".into(),
                    source,
                })?;
        Ok::<_, r2_sync_test_rig::pg::PgError>(
            rows.into_iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .unwrap_or_default(),
        )
    })?;
    machine::describe(
        &p.rec,
        &s,
        (&p.root, &p.work, &p.disk, p.looped, &p.nginx),
        &server_version,
    )?;
    let mut h = harness::start(s, p, clean.clone(), handle.clone())?;

    say(format!("generating data in {}", h.work.display()));
    let s = h.s.clone();
    if s.wants("videos") {
        h.make_videos()?;
    }
    if s.wants("big") || s.wants("resume") || s.wants("context") {
        h.make_big()?;
    }
    if s.wants("small") {
        h.make_small()?;
    }
    if s.wants("serve") || s.wants("context") {
        h.make_serve_file()?;
    }
    h.meta("videos", s.videos)?;
    h.meta("video_bytes", h.video_bytes)?;
    h.meta("big_bytes", s.big_bytes())?;
    h.meta("small_files", s.small_files)?;
    h.meta("small_bytes", s.small_bytes)?;
    h.meta("serve_bytes", s.serve_bytes())?;

    if s.wants("videos") {
        h.bench_videos()?;
    }
    if s.wants("big") {
        h.bench_big()?;
    }
    if s.wants("small") {
        h.bench_small()?;
        h.bench_small_floor()?;
    }
    if s.wants("resume") {
        h.bench_resume()?;
    }
    if s.wants("serve") {
        h.bench_serve()?;
    }
    if s.wants("context") {
        h.bench_context()?;
    }
    if s.wants("ledger") {
        h.bench_ledger()?;
    }
    h.notes()?;

    say(format!("writing {}", s.out.display()));
    println!();
    let only = match s.only.as_str() {
        "ledger" => Only::Ledger,
        "serve" => Only::Serve,
        _ => Only::All,
    };
    let printed = report::write(&h.rec.results, &h.rec.meta, &s.out, only)?;
    println!("{printed}");
    Ok(())
}

fn report_command(args: &[String]) -> ExitCode {
    let only = if args.iter().any(|a| a == "--only-ledger") {
        Only::Ledger
    } else if args.iter().any(|a| a == "--only-serve") {
        Only::Serve
    } else {
        Only::All
    };
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let result: Result<String> = match files[..] {
        [results, meta, out] => {
            report::write(Path::new(results), Path::new(meta), Path::new(out), only).map_err(Into::into)
        }
        _ => Err(BenchError::Failed(
            "usage: r2-sync-bench report [--only-ledger|--only-serve] RESULTS META OUT".into(),
        )),
    };
    match result {
        Ok(printed) => {
            println!("{printed}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
