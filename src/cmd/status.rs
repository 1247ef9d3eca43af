//! `r2-sync status`: a summary, or the entries a filter picks, from the ledger or the
//! running process.

use std::process::ExitCode;

use crate::config::Config;
use crate::context::LEDGER_FILE;
use crate::health_client;
use crate::state::Ledger;
use crate::status;

/// `r2-sync status`: read from the ledger file, or, while a running r2-sync holds it, from
/// that process's `GET /status` on the health port (which answers the same).
pub(super) async fn status(cfg: &Config, json: bool, filters: &status::Filters) -> ExitCode {
    let shown = match Ledger::open(&cfg.state_dir.join(LEDGER_FILE)) {
        Ok(ledger) => local_status(&ledger, json, filters),
        Err(crate::state::LedgerError::InUse { path }) => remote_status(cfg, &path, json, filters).await,
        Err(e) => Err(e.to_string()),
    };
    match shown {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("r2-sync: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The limit a listing gets: as asked, or a screenful for a human.
fn listing_query(json: bool, filters: &status::Filters) -> crate::state::Query {
    let mut q = filters.query();
    if !json {
        q.limit.get_or_insert(status::HUMAN_LIMIT);
    }
    q
}

fn local_status(ledger: &Ledger, json: bool, filters: &status::Filters) -> Result<(), String> {
    if !filters.lists() {
        let summary = status::summary(ledger).map_err(|e| e.to_string())?;
        print_summary(&summary, json);
        return Ok(());
    }
    let q = listing_query(json, filters);
    let mut shown = 0;
    ledger
        .scan(&q, |found| {
            match found {
                Ok(entry) => {
                    print_entry(&entry, json);
                    shown += 1;
                }
                Err(e) => eprintln!("r2-sync: {e}"),
            }
            true
        })
        .map_err(|e| e.to_string())?;
    listing_footer(json, filters, shown);
    Ok(())
}

async fn remote_status(cfg: &Config, path: &str, json: bool, filters: &status::Filters) -> Result<(), String> {
    let port = cfg.server.health_port;
    let mut query = filters.to_url_query();
    if filters.lists() && !json && filters.limit.is_none() {
        query = format!("{query}&limit={}", status::HUMAN_LIMIT);
    }
    let (code, body) = health_client::local_get(port, &format!("/status?{query}"))
        .await
        .map_err(|e| format!("ledger {path} is in use and /status on port {port} did not answer: {e}"))?;
    if code != 200 {
        let body = String::from_utf8_lossy(&body);
        return Err(format!(
            "ledger {path} is in use and /status on port {port} answered {code}: {body}"
        ));
    }
    if !filters.lists() {
        let summary = serde_json::from_slice(&body).map_err(|e| format!("/status on port {port}: {e}"))?;
        print_summary(&summary, json);
        return Ok(());
    }
    let mut shown = 0;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let entry = serde_json::from_slice(line).map_err(|e| format!("/status on port {port}: {e}"))?;
        print_entry(&entry, json);
        shown += 1;
    }
    listing_footer(json, filters, shown);
    Ok(())
}

fn print_summary(summary: &status::Summary, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).expect("summaries serialise")
        );
    } else {
        print!("{}", status::render(summary));
    }
}

fn print_entry(entry: &crate::state::Entry, json: bool) {
    if json {
        println!("{}", serde_json::to_string(entry).expect("entries serialise"));
    } else {
        println!("{}", status::line(entry));
    }
}

fn listing_footer(json: bool, filters: &status::Filters, shown: usize) {
    if !json && filters.limit.is_none() && shown == status::HUMAN_LIMIT {
        println!("(the first {shown}; --limit N shows more, --json all)");
    }
}
