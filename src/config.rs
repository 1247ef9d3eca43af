//! Settings, read once from the environment into a typed [`Config`].
//!
//! Names and defaults follow `docs/contract.md` (backwards compatible with the bash
//! service). Nothing else in r2-sync reads the environment: everything gets a `Config`.
//! [`SETTINGS`] lists every variable read here; the Unraid template and the README are tested
//! against it so they cannot drift.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

/// Every environment variable r2-sync reads (aliases included).
pub const SETTINGS: &[&str] = &[
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "DB_PASS",
    "DB_SSLMODE",
    "R2_ENDPOINT",
    "R2_ACCESS_KEY",
    "R2_SECRET_KEY",
    "R2_BUCKET",
    "R2_REGION",
    "BATCH_SIZE",
    "SYNC_INTERVAL",
    "SYNC_CRON",
    "SYNC_CONCURRENCY",
    "ARCHIVE_DIR",
    "STATE_DIR",
    "DRY_RUN",
    "SHADOW_DIR",
    "FFPROBE_PATH",
    "FFPROBE_DEMUX_PATH",
    "FFPROBE_TIMEOUT",
    "VALIDATE_MEDIA",
    "ARCHIVE_SYNCFS",
    "SERVER_PORT",
    "HEALTH_PORT",
    "UNRAID_TUNNEL_SECRET",
    "JWT_LEEWAY",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "MAX_CONNECTIONS",
    "SHUTDOWN_GRACE",
    "ADMIN_TOKEN",
    "LOG_LEVEL",
];

/// The JWT secret must be at least this long (HS256 wants a key as long as its hash).
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// A value that must never be printed: `Debug` and `Display` both redact it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, certificate not checked (libpq's default).
    Prefer,
    /// TLS or nothing, certificate not checked.
    Require,
    /// TLS with the certificate checked against the web's roots and the host name.
    VerifyFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Secret,
    pub sslmode: SslMode,
}

#[derive(Debug, Clone)]
pub struct R2Config {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: Secret,
    pub bucket: String,
    pub region: String,
}

/// When passes run: a fixed interval, or a cron expression that replaces it.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub batch_size: u32,
    pub schedule: Schedule,
    pub concurrency: usize,
    pub dry_run: bool,
    pub shadow_dir: Option<PathBuf>,
    pub ffprobe_path: PathBuf,
    /// An ffprobe without video decoders, asked first (see [`crate::probe::judge_file`]).
    pub ffprobe_demux_path: Option<PathBuf>,
    pub ffprobe_timeout: Duration,
    pub validate_media: bool,
    /// Files finishing together share one syncfs of the archive where its filesystem honours it.
    pub archive_syncfs: bool,
}

impl SyncConfig {
    /// The ffprobes files are judged by.
    pub fn probers(&self) -> crate::probe::Programs<'_> {
        crate::probe::Programs {
            full: &self.ffprobe_path,
            demux: self.ffprobe_demux_path.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub port: u16,
    pub health_port: u16,
    pub tunnel_secret: Secret,
    pub jwt_leeway: Duration,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// Required by the dashboard's actions and `POST /adopt` on the health port when set.
    pub admin_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub db: DbConfig,
    pub r2: R2Config,
    pub sync: SyncConfig,
    pub server: ServerConfig,
    pub archive_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_level: LogLevel,
    /// Test builds only: the crash point `R2SYNC_FAULT` names (see `fault`).
    #[cfg(feature = "fault-injection")]
    pub fault: Option<String>,
}

/// Reads settings from a map of variables; empty values count as unset.
struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::new(var, "is required but not set"))
    }

    fn string_or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_owned()
    }

    fn parsed<T: FromStr>(&self, var: &'static str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError::new(var, format!("expected {what}, got {raw:?}"))),
        }
    }

    fn positive<T: FromStr + PartialOrd + Default>(&self, var: &'static str, default: T) -> Result<T, ConfigError> {
        let value = self.parsed(var, default, "a positive whole number")?;
        if value <= T::default() {
            return Err(ConfigError::new(var, "must be greater than zero"));
        }
        Ok(value)
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => parse_duration(raw).map_err(|problem| ConfigError::new(var, problem)),
        }
    }

    fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(other) => Err(ConfigError::new(var, format!("expected true or false, got {other:?}"))),
        }
    }

    fn path_opt(&self, var: &'static str) -> Option<PathBuf> {
        self.get(var).map(PathBuf::from)
    }
}

/// `30m`, `1h30m`, `45s`, `1h 30m`; a bare number is seconds. Zero is refused.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let parsed = match raw.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(raw)
            .map_err(|e| format!("expected a duration like 30m, 1h30m or 45s, got {raw:?} ({e})"))?,
    };
    if parsed.is_zero() {
        return Err(format!("must be longer than zero, got {raw:?}"));
    }
    Ok(parsed)
}

fn parse_sslmode(raw: &str) -> Result<SslMode, ConfigError> {
    match raw.to_ascii_lowercase().as_str() {
        "disable" => Ok(SslMode::Disable),
        "prefer" | "allow" => Ok(SslMode::Prefer),
        "require" => Ok(SslMode::Require),
        "verify-ca" | "verify-full" => Ok(SslMode::VerifyFull),
        _ => Err(ConfigError::new(
            "DB_SSLMODE",
            format!("expected disable, prefer, require or verify-full, got {raw:?}"),
        )),
    }
}

pub(crate) fn parse_log_level(raw: &str) -> Result<LogLevel, ConfigError> {
    match raw.to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        _ => Err(ConfigError::new(
            "LOG_LEVEL",
            format!("expected error, warn, info, debug or trace, got {raw:?}"),
        )),
    }
}

fn parse_schedule(vars: &Vars) -> Result<Schedule, ConfigError> {
    if let Some(expr) = vars.get("SYNC_CRON") {
        return parse_cron(expr).map(|s| Schedule::Cron(Box::new(s)));
    }
    Ok(Schedule::Every(
        vars.duration("SYNC_INTERVAL", Duration::from_secs(30 * 60))?,
    ))
}

/// Accepts the usual five-field crontab form as well as the `cron` crate's six or seven
/// fields (with seconds, optional year).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, ConfigError> {
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 | 7 => expr.to_owned(),
        _ => {
            return Err(ConfigError::new(
                "SYNC_CRON",
                format!(
                    "expected 5 fields (minute hour day month weekday, e.g. 0 */2 * * *), got {fields} in {expr:?}"
                ),
            ))
        }
    };
    cron::Schedule::from_str(&full).map_err(|e| {
        ConfigError::new(
            "SYNC_CRON",
            format!("invalid cron expression {expr:?}: {}", one_line(&e.to_string())),
        )
    })
}

/// The `cron` crate's errors quote the input and point at it with `^` on lines of their own;
/// a configuration error is one line.
fn one_line(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect();
    parts.join("; ")
}

fn parse_secret(vars: &Vars) -> Result<Secret, ConfigError> {
    let secret = vars.required("UNRAID_TUNNEL_SECRET")?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(ConfigError::new(
            "UNRAID_TUNNEL_SECRET",
            format!("must be at least {MIN_SECRET_LEN} bytes long (it is {})", secret.len()),
        ));
    }
    Ok(Secret::new(secret))
}

/// A value left as the example files ship it (`CHANGE_ME_...` in `.env.example`, `<...>` in
/// the README): an unedited `.env` would otherwise sign links with a secret published in the
/// repository, or connect to a host called `<postgres-host>`.
fn is_placeholder(value: &str) -> bool {
    let upper = value.to_ascii_uppercase();
    let angled = value.find('<').is_some_and(|open| value[open..].contains('>'));
    upper.contains("CHANGE_ME") || upper.starts_with("CHANGEME") || angled
}

fn refuse_placeholders(vars: &Vars) -> Result<(), ConfigError> {
    match SETTINGS.iter().find(|var| vars.get(var).is_some_and(is_placeholder)) {
        Some(var) => Err(ConfigError::new(
            var,
            "still holds the example's placeholder value; set the real value (see the README's configuration table)",
        )),
        None => Ok(()),
    }
}

fn parse_endpoint(vars: &Vars) -> Result<String, ConfigError> {
    let endpoint = vars.required("R2_ENDPOINT")?;
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(ConfigError::new(
            "R2_ENDPOINT",
            format!("expected an http(s):// URL, got {endpoint:?}"),
        ));
    }
    Ok(endpoint.trim_end_matches('/').to_owned())
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let vars = Vars(map);
        refuse_placeholders(&vars)?;
        let password = vars.get("DB_PASSWORD").or_else(|| vars.get("DB_PASS")).unwrap_or("");
        let db = DbConfig {
            host: vars.required("DB_HOST")?,
            port: vars.parsed("DB_PORT", 5432, "a port number 1-65535")?,
            name: vars.required("DB_NAME")?,
            user: vars.required("DB_USER")?,
            password: Secret::new(password),
            sslmode: parse_sslmode(&vars.string_or("DB_SSLMODE", "prefer"))?,
        };
        let r2 = R2Config {
            endpoint: parse_endpoint(&vars)?,
            access_key: vars.required("R2_ACCESS_KEY")?,
            secret_key: Secret::new(vars.required("R2_SECRET_KEY")?),
            bucket: vars.required("R2_BUCKET")?,
            region: vars.string_or("R2_REGION", "auto"),
        };
        let sync = SyncConfig {
            batch_size: vars.positive("BATCH_SIZE", 10)?,
            schedule: parse_schedule(&vars)?,
            concurrency: vars.positive("SYNC_CONCURRENCY", 2)?,
            dry_run: vars.flag("DRY_RUN", false)?,
            shadow_dir: vars.path_opt("SHADOW_DIR"),
            ffprobe_path: PathBuf::from(vars.string_or("FFPROBE_PATH", "ffprobe")),
            ffprobe_demux_path: vars.path_opt("FFPROBE_DEMUX_PATH"),
            ffprobe_timeout: vars.duration("FFPROBE_TIMEOUT", Duration::from_secs(120))?,
            validate_media: vars.flag("VALIDATE_MEDIA", true)?,
            archive_syncfs: vars.flag("ARCHIVE_SYNCFS", true)?,
        };
        let server = ServerConfig {
            port: vars.parsed("SERVER_PORT", 8080, "a port number 1-65535")?,
            health_port: vars.parsed("HEALTH_PORT", 8081, "a port number 1-65535")?,
            tunnel_secret: parse_secret(&vars)?,
            jwt_leeway: match vars.get("JWT_LEEWAY") {
                Some("0") => Duration::ZERO,
                _ => vars.duration("JWT_LEEWAY", Duration::from_secs(30))?,
            },
            jwt_issuer: vars.get("JWT_ISSUER").map(str::to_owned),
            jwt_audience: vars.get("JWT_AUDIENCE").map(str::to_owned),
            max_connections: vars.positive("MAX_CONNECTIONS", 512)?,
            shutdown_grace: vars.duration("SHUTDOWN_GRACE", Duration::from_secs(30))?,
            admin_token: vars.get("ADMIN_TOKEN").map(Secret::new),
        };
        Ok(Config {
            db,
            r2,
            sync,
            server,
            archive_dir: PathBuf::from(vars.string_or("ARCHIVE_DIR", "/media/archive")),
            state_dir: PathBuf::from(vars.string_or("STATE_DIR", "/config")),
            log_level: parse_log_level(&vars.string_or("LOG_LEVEL", "info"))?,
            #[cfg(feature = "fault-injection")]
            fault: map.get("R2SYNC_FAULT").cloned(),
        })
    }

    /// Only `HEALTH_PORT`, for `r2-sync healthcheck`: the container's health probe must not
    /// depend on every other setting being valid.
    pub fn health_port_from_env() -> Result<u16, ConfigError> {
        let map = std::env::vars().collect();
        Vars(&map).parsed("HEALTH_PORT", 8081, "a port number 1-65535")
    }

    /// Where this pass writes files: the shadow directory when set, else the archive.
    pub fn target_dir(&self) -> &std::path::Path {
        self.sync.shadow_dir.as_deref().unwrap_or(&self.archive_dir)
    }
}

#[cfg(test)]
mod tests;
