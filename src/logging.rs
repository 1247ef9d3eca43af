//! Structured logs: one JSON object per line on stdout, with `ts`, `level`, `msg` and the
//! stable keys below. Secrets and tokens are never passed to a logger.

use std::sync::Mutex;

use slog::{o, Drain, Level, LevelFilter, Logger};

use crate::config::LogLevel;

/// Stable key names, so that dashboards and tests can rely on them.
pub mod keys {
    pub const MEDIA_ID: &str = "media_id";
    pub const STAGE: &str = "stage";
    pub const BYTES: &str = "bytes";
    pub const ELAPSED_MS: &str = "elapsed_ms";
    pub const ERROR: &str = "error";
}

fn slog_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    }
}

/// `level` as `LOG_LEVEL` spells it (slog's own names are upper-case and abbreviated):
/// one spelling in the settings, the logs and the filters written against them.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::Error => "error",
        Level::Warning => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// JSON lines with `ts` (RFC 3339, UTC), `level` and `msg` first.
fn json_drain<W: std::io::Write>(out: W) -> slog_json::Json<W> {
    use slog::{FnValue, PushFnValue, Record};
    slog_json::Json::new(out)
        .add_key_value(o!(
            "ts" => FnValue(|_: &Record| {
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            }),
            "level" => FnValue(|record: &Record| level_name(record.level())),
            "msg" => PushFnValue(|record: &Record, ser| ser.emit(record.msg())),
        ))
        .build()
}

/// The root logger. Writes synchronously (stdout is line-buffered), so the last lines before
/// a crash are not lost in a queue.
pub fn root(level: LogLevel) -> Logger {
    let json = json_drain(std::io::stdout());
    let drain = LevelFilter::new(Mutex::new(json).fuse(), slog_level(level)).fuse();
    Logger::root(drain, o!("version" => env!("CARGO_PKG_VERSION")))
}

/// Makes every panic one JSON line (`"msg":"panic"`, `error`, `location`, `thread`) on the
/// log instead of the default multi-line text on stderr, so a log shipper sees one event.
/// The process goes on as before: a panicking task or thread still unwinds.
pub fn log_panics(log: Logger) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-text panic payload".to_owned());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        slog::crit!(log, "panic"; keys::ERROR => message, "location" => location, "thread" => thread);
    }));
}

/// A logger that drops everything, for unit tests and library callers that do not log.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use slog::{o, Drain, Logger};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_is_logged_as_one_json_line() {
        let buffer = Buffer::default();
        let json = super::json_drain(buffer.clone());
        super::log_panics(Logger::root(Mutex::new(json).fuse(), o!()));
        let joined = std::thread::Builder::new()
            .name("doomed".into())
            .spawn(|| panic!("static str is not valid path"))
            .unwrap()
            .join();
        drop(std::panic::take_hook()); // back to the default hook
        assert!(joined.is_err());
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["msg"], "panic");
        assert_eq!(line["level"], "critical");
        assert_eq!(line["error"], "static str is not valid path");
        assert_eq!(line["thread"], "doomed");
        assert!(
            line["location"].as_str().unwrap().starts_with("src/logging.rs:"),
            "{line}"
        );
    }

    #[test]
    fn levels_are_spelled_as_log_level_takes_them() {
        let buffer = Buffer::default();
        let log = Logger::root(Mutex::new(super::json_drain(buffer.clone())).fuse(), o!());
        slog::error!(log, "e");
        slog::warn!(log, "w");
        slog::info!(log, "i");
        slog::debug!(log, "d");
        slog::trace!(log, "t");
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let levels: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .inspect(|line| {
                let ts = line["ts"].as_str().unwrap();
                assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
            })
            .map(|line| line["level"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(levels, ["error", "warn", "info", "debug", "trace"]);
        for level in &levels {
            assert!(crate::config::parse_log_level(level).is_ok(), "{level}");
        }
    }
}
