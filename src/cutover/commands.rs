//! The `shadow-report` and `adopt` commands: output for humans or JSON lines, and the exit
//! codes scripts read.

use std::process::ExitCode;

use super::{adopt, report};
use crate::app::LEDGER_FILE;
use crate::config::Config;
use crate::db::Db;
use crate::state::{Ledger, LedgerError};

/// `--max-rate`: bytes per second, with an optional K, M or G (powers of 1000).
pub fn parse_rate(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => raw.split_at(i),
        None => (raw, ""),
    };
    let scale = match unit.to_ascii_uppercase().trim_end_matches("B/S").trim_end_matches('B') {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(format!("{raw:?}: a rate is bytes per second, e.g. 50M")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{raw:?}: a rate is a positive number of bytes per second, e.g. 50M"))
}

fn db(cfg: &Config) -> Result<Db, String> {
    Db::new(&cfg.db, "r2-sync-cutover").map_err(|e| e.to_string())
}

/// `r2-sync shadow-report`: exit 0 only when no shadow copy differs from the old one.
pub async fn shadow_report(cfg: &Config, json: bool) -> ExitCode {
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
pub async fn adopt(cfg: &Config, max_rate: Option<u64>, json: bool) -> ExitCode {
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
    let headers = match crate::server::commands::action_headers(cfg).await {
        Ok(headers) => headers,
        Err(e) => return fail(&format!("the ledger is in use and /api/session on port {port}: {e}")),
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut summary = None;
    let mut bad = None;
    let streamed = crate::server::commands::local_stream(port, "POST", &path, &headers, |line| {
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

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_take_plain_bytes_and_decimal_suffixes() {
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert_eq!(parse_rate("50M"), Ok(50_000_000));
        assert_eq!(parse_rate("2G"), Ok(2_000_000_000));
        assert_eq!(parse_rate("10KB/s"), Ok(10_000));
        for bad in ["", "0", "fast", "5T", "-3"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
