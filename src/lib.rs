//! r2-sync: archives approved media from Cloudflare R2 to a NAS, and serves the archive.

pub mod activity;
pub mod archive;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod coalesce;
pub mod config;
pub mod context;
pub mod cutover;
pub mod db;
pub mod fault;
pub mod flush;
pub mod health_client;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod storage;
pub mod sync;

pub use r2_sync_state as state;
