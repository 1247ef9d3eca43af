//! Headless Chromium driven through chromedriver's W3C WebDriver HTTP interface: a session,
//! navigation, scripts, clicks, a screenshot and the browser's console log. A few JSON
//! requests over the HTTP client the tests already use; chromedriver's console log is an
//! extension (`goog:loggingPrefs`, `/se/log`) that the WebDriver crates do not wrap either.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a phone's viewport.
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver is required for the tests (apt-get install chromium chromium-driver; scripts/test.sh does)");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        browser.wait_for_driver().await;
        browser.new_session().await;
        browser
    }

    async fn wait_for_driver(&self) {
        let began = Instant::now();
        loop {
            if let Ok(resp) = self.http.get(format!("{}/status", self.base)).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            assert!(began.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn new_session(&mut self) {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // No sandbox: the suite runs as root in containers, where Chromium's needs
                // namespaces it may not get.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=412,915", "--no-first-run", "--disable-extensions"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let value = self.call("POST", "/session", caps).await;
        let id = value["sessionId"].as_str().expect("a session id").to_owned();
        self.base = format!("{}/session/{id}", self.base);
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json_body(&body),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let answer: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
        assert!(status.is_success(), "WebDriver {method} {path}: {status} {answer}");
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; what it returns.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Evaluates `script` every 100 ms until it returns something truthy (30 s at most).
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let began = Instant::now();
        loop {
            let value = self.eval(script, args.clone()).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false)) && value != json!(0) && value != json!("");
            if truthy {
                return value;
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "{what}: never seen in the page"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let found = self
            .call("POST", "/element", json!({ "using": "css selector", "value": css }))
            .await;
        let id = found[ELEMENT].as_str().expect("an element").to_owned();
        self.call("POST", &format!("/element/{id}/click"), json!({})).await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = self.call("GET", "/screenshot", Value::Null).await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }

    /// The console's entries since the last call (`level`, `message`).
    pub async fn console(&self) -> Vec<Value> {
        let logs = self.call("POST", "/se/log", json!({ "type": "browser" })).await;
        logs.as_array().cloned().unwrap_or_default()
    }

    pub async fn quit(mut self) {
        self.call("DELETE", "", Value::Null).await;
        drop(self.driver.kill().await);
    }
}

/// `reqwest` is built without its `json` feature here: a JSON body by hand.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
    }
}
