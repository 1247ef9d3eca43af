//! `r2-sync check`.

use std::process::ExitCode;

use crate::check;
use crate::config::Config;
use crate::db::Db;
use crate::storage::Storage;

/// `r2-sync check`: each part tested, one line each; exit 0 when all are ok.
pub(super) async fn check(cfg: &Config) -> ExitCode {
    println!(
        "ok   config: settings parsed (archive {}, state {})",
        cfg.archive_dir.display(),
        cfg.state_dir.display()
    );
    let db = match Db::new(&cfg.db, "r2-sync-check") {
        Ok(db) => db,
        Err(e) => return fail_line("postgres", &e.to_string()),
    };
    let storage = match Storage::new(&cfg.r2) {
        Ok(s) => s,
        Err(e) => return fail_line("bucket", &e.to_string()),
    };
    // Its failure is said here, and again by the archive check below, which runs anyway.
    if !cfg.sync.dry_run {
        match check::prepare_target_dir(cfg.target_dir()) {
            Ok(true) => println!("ok   archive: created {}", cfg.target_dir().display()),
            Ok(false) => {}
            Err(e) => println!("FAIL archive: {e}"),
        }
    }
    let results = check::all(cfg, &db, &storage).await;
    for r in &results {
        println!(
            "{} {}: {} ({} ms)",
            if r.ok { "ok  " } else { "FAIL" },
            r.name,
            r.detail,
            r.latency_ms
        );
    }
    if results.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail_line(name: &str, detail: &str) -> ExitCode {
    println!("FAIL {name}: {detail}");
    ExitCode::FAILURE
}
