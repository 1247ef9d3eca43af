#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need (idempotent;
# FUSE's fusermount3 among them, for the power-cut tests), builds the minimal ffprobe,
# starts the local PostgreSQL when it is down, builds the test S3 server, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need_ffmpeg
need_min_ffprobe
need_curl
need_chromium
need_promtool
need_fuse
need_nextest
need_postgres
cargo build --locked -p r2-sync-test-s3
# Crash points are compiled into test builds only (see src/fault.rs).
cargo nextest run --locked --workspace --features r2-sync/fault-injection --no-fail-fast "$@"
