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

/// The root logger. Writes synchronously (stdout is line-buffered), so the last lines before
/// a crash are not lost in a queue.
pub fn root(level: LogLevel) -> Logger {
    let json = slog_json::Json::new(std::io::stdout()).add_default_keys().build();
    let drain = LevelFilter::new(Mutex::new(json).fuse(), slog_level(level)).fuse();
    Logger::root(drain, o!("version" => env!("CARGO_PKG_VERSION")))
}

/// A logger that drops everything, for unit tests and library callers that do not log.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}
