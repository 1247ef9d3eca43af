//! `r2-sync shadow-report` and `r2-sync adopt`: output for humans or JSON lines, and the exit
//! codes scripts read.

use std::process::ExitCode;

use crate::config::Config;
use crate::context::LEDGER_FILE;
use crate::cutover::{adopt, report};
use crate::db::Db;
use crate::state::{Ledger, LedgerError};

fn db(cfg: &Config) -> Result<Db, String> {
    Db::new(&cfg.db, "r2-sync-cutover").map_err(|e| e.to_string())
}

/// `r2-sync shadow-report`: exit 0 only when no shadow copy differs from the old one.
pub(super) async fn shadow_report(cfg: &Config, json: bool) -> ExitCode {
    let db = match db(cfg) {
        Ok(db) => db,
        Err(e) => return fail(&e),
    };
    let reasons = report::Reasons::open(cfg);
    let printed = report::run(cfg, &db, &reasons, |finding| {
        if json {
            println!("{}", serde_json::to_string(finding).expect("findings serialise"));
        } else if let Some(line) = report::line(finding) {
            println!("{line}");
        }
    })
    .await;
    match printed {
        Ok(summary) => {
            if json {
                println!("{}", serde_json::json!({ "summary": summary }));
            } else {
                println!("{}", report::render_summary(&summary));
            }
            if summary.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&e),
    }
}

/// `r2-sync adopt`: here when the ledger is free, else by the running process that holds it.
pub(super) async fn adopt(cfg: &Config, max_rate: Option<u64>, json: bool) -> ExitCode {
    let ledger = match Ledger::open(&cfg.state_dir.join(LEDGER_FILE)) {
        Ok(ledger) => ledger,
        Err(LedgerError::InUse { .. }) => return adopt_by_the_running_process(cfg, max_rate, json).await,
        Err(e) => return fail(&e.to_string()),
    };
    let db = match db(cfg) {
        Ok(db) => db,
        Err(e) => return fail(&e),
    };
    let done = adopt::run(cfg, &db, &ledger, max_rate, |a| print_adopted(a, json)).await;
    finish(done, json)
}

async fn adopt_by_the_running_process(cfg: &Config, max_rate: Option<u64>, json: bool) -> ExitCode {
    let port = cfg.server.health_port;
    let path = match max_rate {
        Some(rate) => format!("/adopt?max_rate={rate}"),
        None => "/adopt".to_owned(),
    };
    let headers = match crate::health_client::action_headers(cfg).await {
        Ok(headers) => headers,
        Err(e) => return fail(&format!("the ledger is in use and /api/session on port {port}: {e}")),
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut summary = None;
    let mut bad = None;
    let streamed = crate::health_client::local_stream(port, "POST", &path, &headers, |line| {
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                bad = Some(format!("/adopt on port {port}: {e}"));
                return;
            }
        };
        if value.get("outcome").is_some() {
            match serde_json::from_value::<adopt::Adopted>(value) {
                Ok(a) => print_adopted(&a, json),
                Err(e) => bad = Some(format!("/adopt on port {port}: {e}")),
            }
        } else if let Some(s) = value.get("summary") {
            summary = serde_json::from_value::<adopt::Summary>(s.clone()).ok();
        } else if let Some(e) = value.get("error").and_then(|e| e.as_str()) {
            bad = Some(e.to_owned());
        }
    })
    .await;
    if let Err(e) = streamed {
        return fail(&format!("the ledger is in use and /adopt on port {port}: {e}"));
    }
    match (bad, summary) {
        (Some(e), _) => fail(&e),
        (None, Some(s)) => finish(Ok(s), json),
        (None, None) => fail(&format!("/adopt on port {port} ended without a summary")),
    }
}

fn print_adopted(a: &adopt::Adopted, json: bool) {
    if json {
        println!("{}", serde_json::to_string(a).expect("outcomes serialise"));
        return;
    }
    match a {
        adopt::Adopted::Adopted {
            media_id,
            path,
            sidecar,
            ..
        } => println!("adopted {media_id:>9}  {path}  (sidecar {sidecar})"),
        adopt::Adopted::Missing { media_id, path, error } => {
            println!("MISSING {media_id:>9}  {path}: {error}")
        }
    }
}

fn finish(done: Result<adopt::Summary, String>, json: bool) -> ExitCode {
    match done {
        Ok(s) => {
            if json {
                println!("{}", serde_json::json!({ "summary": s }));
            } else {
                println!(
                    "{} adopted ({} sidecars written, {} sidecars that name other bytes left as they are), \
                     {} already known, {} missing",
                    s.adopted, s.sidecars_written, s.sidecars_differ, s.already_known, s.missing
                );
            }
            if s.missing == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &str) -> ExitCode {
    eprintln!("r2-sync: {e}");
    ExitCode::FAILURE
}
