#!/usr/bin/env bash
# One-command demo on a fresh Debian machine: builds r2-sync and the test S3 server, starts
# the S3 server and a scratch database on the local PostgreSQL, then runs r2-sync against
# them. Cleans up on exit and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need_ffmpeg
need_postgres
cargo build --locked --release -p r2-sync -p r2-sync-test-s3
BIN=target/release

WORK=$(mktemp -d /tmp/r2-sync-demo.XXXXXX)
DB="r2sync_demo_$$"
S3_PID=
cleanup() {
    [ -n "$S3_PID" ] && kill "$S3_PID" 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/s3/media" "$WORK/archive" "$WORK/state"
"$BIN/r2-sync-test-s3" --access-key demo-access --secret-key demo-secret "$WORK/s3" >"$WORK/s3.out" &
S3_PID=$!
for _ in $(seq 1 50); do grep -q listening "$WORK/s3.out" 2>/dev/null && break; sleep 0.1; done
S3_ADDR=$(sed -n 's/^listening on //p' "$WORK/s3.out")

psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB" >/dev/null
psql -h 127.0.0.1 -U postgres -d "$DB" -q -f schema/backend.sql >/dev/null

export DB_HOST=127.0.0.1 DB_PORT=5432 DB_NAME="$DB" DB_USER=postgres DB_SSLMODE=disable
export R2_ENDPOINT="http://$S3_ADDR" R2_ACCESS_KEY=demo-access R2_SECRET_KEY=demo-secret R2_BUCKET=media
export ARCHIVE_DIR="$WORK/archive" STATE_DIR="$WORK/state"
export UNRAID_TUNNEL_SECRET="demo-secret-demo-secret-demo-secret-42"

"$BIN/r2-sync" check
