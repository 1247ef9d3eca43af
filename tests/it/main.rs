//! Every integration test in one binary: the tree is linked once, not once per test file.
//! Each module is one area (`cargo nextest run --test it <module>::` runs one).

mod common;
mod server_support;

mod alerts;
mod cli;
mod crash;
mod cutover;
mod dashboard;
mod dashboard_browser;
mod db;
mod disk;
mod faults;
mod grants;
mod keys;
mod metrics;
mod offline;
mod packaging;
mod powercut;
mod probe_corpus;
mod probe_limits;
mod resume;
mod rig;
mod server;
mod server_auth;
mod server_binary;
mod server_bodies;
mod server_ops;
mod soak;
mod sync;
