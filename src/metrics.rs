//! Prometheus metrics (`GET /metrics` on `HEALTH_PORT`), with the `prometheus-client` crate.
//! One [`Metrics`] per process, shared by the sync pipeline and the file server; every
//! update is an atomic operation. Label sets are small and fixed: failure reasons, routes,
//! statuses and ledger stages.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::state::{entry::now_secs, Stage};

/// The `Content-Type` of [`Metrics::render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the pass duration buckets: an empty pass to a long backlog.
const PASS_BUCKETS: [f64; 10] = [0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0];

/// Why a file failed permanently, as a label: given where the failure is decided, by the
/// error's type (see `sync::trouble::Trouble`), never read back from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// ffprobe rejected the file or ran past FFPROBE_TIMEOUT.
    Ffprobe,
    Checksum,
    Size,
    ObjectGone,
    /// The row's `r2_key` names no object r2-sync may touch.
    Key,
}

impl FailReason {
    pub const ALL: [FailReason; 5] = [Self::Ffprobe, Self::Checksum, Self::Size, Self::ObjectGone, Self::Key];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ffprobe => "ffprobe",
            Self::Checksum => "checksum",
            Self::Size => "size",
            Self::ObjectGone => "object_gone",
            Self::Key => "key",
        }
    }
}

/// Which endpoint answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpRoute {
    File,
    Health,
    HealthDeep,
    Metrics,
    Status,
    Adopt,
    Dashboard,
    #[default]
    Other,
}

impl HttpRoute {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Health => "health",
            Self::HealthDeep => "health_deep",
            Self::Metrics => "metrics",
            Self::Status => "status",
            Self::Adopt => "adopt",
            Self::Dashboard => "dashboard",
            Self::Other => "other",
        }
    }
}

macro_rules! label_value_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    )*};
}
/// How a file body reached the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyPath {
    /// Page cache to socket (`sendfile`), no copy through user space.
    Sendfile,
    /// Read into memory in chunks, then written.
    Buffered,
}

impl BodyPath {
    pub const ALL: [Self; 2] = [Self::Sendfile, Self::Buffered];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sendfile => "sendfile",
            Self::Buffered => "buffered",
        }
    }
}

label_value_as_str!(FailReason, HttpRoute, BodyPath);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: FailReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: HttpRoute,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BodyPathLabel {
    path: BodyPath,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// Every metric r2-sync exports, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    files_synced: Counter,
    bytes_synced: Counter,
    files_failed: Family<ReasonLabel, Counter>,
    transfers_in_flight: Gauge,
    pass_duration: Histogram,
    last_successful_pass: Gauge,
    owed_db_writes: Gauge,
    ledger_entries: Family<StageLabel, Gauge>,
    http_requests: Family<RequestLabels, Counter>,
    bytes_served: Counter,
    file_bodies: Family<BodyPathLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("r2sync"),
            files_synced: Counter::default(),
            bytes_synced: Counter::default(),
            files_failed: Family::default(),
            transfers_in_flight: Gauge::default(),
            pass_duration: Histogram::new(PASS_BUCKETS),
            last_successful_pass: Gauge::default(),
            owed_db_writes: Gauge::default(),
            ledger_entries: Family::default(),
            http_requests: Family::default(),
            bytes_served: Counter::default(),
            file_bodies: Family::default(),
        };
        m.create_every_label();
        m.register_all();
        m
    }

    /// Every reason and stage from the start: a series that appears only with its first
    /// increment defeats `increase()` in alert rules.
    fn create_every_label(&mut self) {
        for reason in FailReason::ALL {
            drop(self.files_failed.get_or_create(&ReasonLabel { reason }));
        }
        for path in BodyPath::ALL {
            drop(self.file_bodies.get_or_create(&BodyPathLabel { path }));
        }
        for stage in Stage::ALL {
            drop(self.ledger_entries.get_or_create(&StageLabel { stage: stage.as_str() }));
        }
    }

    /// Each metric under its name and help text, in the order they are rendered.
    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register(
            "files_synced",
            "Files archived (verified, validated, durable on disk)",
            self.files_synced.clone(),
        );
        r.register(
            "bytes_synced",
            "Size in bytes of the files counted in files_synced",
            self.bytes_synced.clone(),
        );
        r.register(
            "files_failed",
            "Files failed permanently (object kept in R2), by reason",
            self.files_failed.clone(),
        );
        r.register(
            "transfers_in_flight",
            "Downloads from R2 running now",
            self.transfers_in_flight.clone(),
        );
        r.register_with_unit(
            "pass_duration",
            "Duration of sync passes",
            Unit::Seconds,
            self.pass_duration.clone(),
        );
        r.register_with_unit(
            "last_successful_pass_timestamp",
            "Unix time of the end of the last pass in which every claimed file succeeded (0: none since start)",
            Unit::Seconds,
            self.last_successful_pass.clone(),
        );
        r.register(
            "owed_db_writes",
            "Ledger entries owing PostgreSQL a write (stages archived and fail_pending)",
            self.owed_db_writes.clone(),
        );
        r.register("ledger_entries", "Ledger entries by stage", self.ledger_entries.clone());
        r.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            self.http_requests.clone(),
        );
        r.register(
            "bytes_served",
            "Body bytes of file downloads (200 and 206 answers) sent to clients",
            self.bytes_served.clone(),
        );
        r.register(
            "file_bodies",
            "File bodies (200 and 206 answers to GET) started, by path: sendfile (page cache to socket) or buffered (read into memory)",
            self.file_bodies.clone(),
        );
    }

    /// A file reached the archive (or the shadow directory).
    pub fn file_synced(&self, bytes: u64) {
        self.files_synced.inc();
        self.bytes_synced.inc_by(bytes);
    }

    /// Bytes archived since the process started.
    pub fn bytes_synced(&self) -> u64 {
        self.bytes_synced.get()
    }

    /// Unix time at the end of the last clean pass; 0 for none since start.
    pub fn last_successful_pass(&self) -> u64 {
        self.last_successful_pass.get().max(0) as u64
    }

    /// A file failed permanently for `reason`.
    pub fn file_failed(&self, reason: FailReason) {
        self.files_failed.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a transfer as in flight until the guard is dropped.
    pub fn transfer(&self) -> InFlight<'_> {
        self.transfers_in_flight.inc();
        InFlight(&self.transfers_in_flight)
    }

    /// A pass ended after `secs`; `succeeded` when every claimed file succeeded.
    pub fn pass_finished(&self, secs: f64, succeeded: bool) {
        self.pass_duration.observe(secs);
        if succeeded {
            self.last_successful_pass.set(now_secs() as i64);
        }
    }

    /// Sets the ledger gauges from `Ledger::counts()`.
    pub fn observe_ledger(&self, counts: &BTreeMap<Stage, usize>) {
        let count = |stage| counts.get(&stage).copied().unwrap_or(0) as i64;
        for stage in Stage::ALL {
            let label = StageLabel { stage: stage.as_str() };
            self.ledger_entries.get_or_create(&label).set(count(stage));
        }
        self.owed_db_writes
            .set(count(Stage::Archived) + count(Stage::FailPending));
    }

    /// A response is done: `bytes` of body were sent (only a file's bytes count as served).
    pub fn http_request(&self, route: HttpRoute, status: u16, bytes: u64) {
        self.http_requests.get_or_create(&RequestLabels { route, status }).inc();
        if route == HttpRoute::File && matches!(status, 200 | 206) {
            self.bytes_served.inc_by(bytes);
        }
    }

    /// A file body is about to be sent by `path`.
    pub fn file_body(&self, path: BodyPath) {
        self.file_bodies.get_or_create(&BodyPathLabel { path }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Decrements `transfers_in_flight` when dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
