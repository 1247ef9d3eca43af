//! The rig the tests (`tests/it/common`) and the benchmark harness (`bench/`, r2-sync-bench)
//! both stand on: a scratch PostgreSQL database made from `schema/backend.sql` ([`pg`]), the
//! test S3 server (`tests/s3-server`) started on a free port over a root directory ([`s3`]),
//! and free ports and plain HTTP GETs on loopback ([`net`]). What only the tests need (their
//! panicking wrappers, bystander objects, rows) stays in `tests/it/common`; what only the
//! bench needs stays in the bench.

pub mod net;
pub mod pg;
pub mod s3;
