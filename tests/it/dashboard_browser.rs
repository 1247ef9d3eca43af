//! The dashboard as a person uses it: headless Chromium on a phone-sized screen, against the
//! real binary during a real pass. The in-flight transfer's bar moves, the corrupt file with
//! a hostile name appears under failures as text with its reason, "Sync now" starts a pass,
//! the console stays free of errors, and a screenshot is kept under `target/test-artefacts/`.

use crate::common::webdriver::Browser;
use crate::dashboard::{Pass, HOSTILE};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The transfer's `data-bytes` and its bar's width in percent, once it shows.
const TRANSFER: &str = "const li = document.querySelector(`#transfers li[data-media-id=\"${arguments[0]}\"]`);
    if (!li) return null;
    const bytes = Number(li.dataset.bytes);
    const width = parseFloat(li.querySelector('.fill').style.width);
    return bytes > 0 ? [bytes, width] : null;";

const FAILURE: &str = "const li = document.querySelector(`#failures li[data-media-id=\"${arguments[0]}\"]`);
    if (!li) return null;
    return { name: li.querySelector('.name').textContent, reason: li.querySelector('.reason').textContent,
             markup: li.querySelectorAll('img, script').length, title: document.title };";

fn artefact(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The top of the page as a PNG under `target/test-artefacts/`.
async fn keep_screenshot(browser: &Browser, name: &str) {
    browser.eval("window.scrollTo(0, 0)", json!([])).await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(artefact(name), &png).unwrap();
}

#[tokio::test]
async fn a_person_watches_a_pass_retries_and_syncs_now_in_chromium() {
    // Slow enough that the transfer is still under way once the browser is up.
    let pass = Pass::start(48 << 10, &[]).await;
    let browser = Browser::start().await;
    browser.goto(&pass.health_url("/")).await;

    let first = browser.wait_for("the big transfer", TRANSFER, json!([pass.big])).await;
    let moved = format!(
        "const now = (() => {{ {TRANSFER} }})(); return now && now[0] > {} && now[1] > {} ? now : null;",
        first[0], first[1]
    );
    let later = browser.wait_for("the bar moving", &moved, json!([pass.big])).await;
    assert!(later[1].as_f64().unwrap() <= 100.0, "{later}");
    keep_screenshot(&browser, "dashboard-transfer.png").await;
    let label = browser
        .eval(
            "return document.querySelector(`#transfers li[data-media-id=\"${arguments[0]}\"] .label`).textContent",
            json!([pass.big]),
        )
        .await;
    assert!(label.as_str().unwrap().contains("/s"), "rate shown: {label}");
    assert!(
        browser
            .eval("return document.getElementById('pass').textContent", json!([]))
            .await
            .as_str()
            .unwrap()
            .contains("of 2 files"),
        "the pass in progress"
    );

    pass.s3.rate(0);
    let failed = browser
        .wait_for("the corrupt file under failures", FAILURE, json!([pass.broken]))
        .await;
    assert_eq!(failed["name"], HOSTILE, "the name is shown as text: {failed}");
    assert_eq!(failed["markup"], 0, "no element made from the name");
    assert_eq!(failed["title"], "r2-sync", "no script from the name ran");
    assert!(failed["reason"].as_str().unwrap().contains("ffprobe"), "{failed}");

    // Retry on it says what to do in the backend.
    browser
        .click(&format!("#failures li[data-media-id=\"{}\"] button", pass.broken))
        .await;
    browser
        .wait_for(
            "the retry's advice",
            "return document.getElementById('action-message').textContent.includes('approved')",
            json!([]),
        )
        .await;

    // Sync now, once the first pass is over.
    browser
        .wait_for(
            "the pass over",
            "return !document.getElementById('sync-now').disabled && document.querySelector('#passes tbody td.partial')",
            json!([]),
        )
        .await;
    let passes = pass.logged("pass finished");
    browser.click("#sync-now").await;
    browser
        .wait_for(
            "Sync now answered",
            "return document.getElementById('action-message').textContent === 'pass starting'",
            json!([]),
        )
        .await;
    let began = Instant::now();
    while pass.logged("pass finished") == passes {
        assert!(began.elapsed() < Duration::from_secs(30), "Sync now started no pass");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let fits = browser
        .eval(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([]),
        )
        .await;
    assert_eq!(fits, true, "no sideways scrolling on a phone-sized screen");
    keep_screenshot(&browser, "dashboard.png").await;

    let console = browser.console().await;
    let errors: Vec<&Value> = console
        .iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.quit().await;
}
