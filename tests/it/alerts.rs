//! The monitoring files shipped in `deploy/`: the Prometheus alert rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`), and every series the rules and the
//! Grafana dashboard query is one r2-sync exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("promtool is required for the tests (apt-get install prometheus; scripts/test.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    assert!(text.contains("SUCCESS"), "promtool {args:?}:\n{text}");
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "rules", "r2-sync.rules.yml"]);
    promtool(&["test", "rules", "r2-sync.rules.test.yml"]);
}

/// `r2sync_...` names in a query.
fn series_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("r2sync_"))
        .map(str::to_owned)
        .collect()
}

/// Series names r2-sync renders on `/metrics` (histograms as `_bucket`, `_sum`, `_count`).
fn exported() -> BTreeSet<String> {
    let metrics = r2_sync::metrics::Metrics::new();
    // The request counters' series appear with the first request.
    metrics.http_request(r2_sync::metrics::HttpRoute::Health, 200, 15);
    metrics
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn grafana_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana/r2-sync.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the Grafana dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "a panel per series, about");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_rules_and_the_grafana_dashboard_query_only_exported_series() {
    let exported = exported();
    let rules = std::fs::read_to_string(deploy("prometheus/r2-sync.rules.yml")).unwrap();
    let mut queried = BTreeSet::new();
    for expr in grafana_exprs().iter().map(String::as_str).chain([rules.as_str()]) {
        queried.extend(series_in(expr));
    }
    let unknown: Vec<_> = queried.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?} (exported: {exported:?})");
    // Every exported metric family has a panel.
    let graphed: BTreeSet<String> = grafana_exprs().iter().flat_map(|e| series_in(e)).collect();
    for name in &exported {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            graphed.iter().any(|g| g.starts_with(family)),
            "no Grafana panel shows {name}"
        );
    }
}
