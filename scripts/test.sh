#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need (idempotent),
# starts the local PostgreSQL when it is down, builds the test S3 server, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need_ffmpeg
need_nextest
need_postgres
cargo build --locked -p r2-sync-test-s3
cargo nextest run --locked --workspace --no-fail-fast "$@"
