#!/usr/bin/env bash
# The one-command demo on a fresh Debian machine: builds r2-sync and the test S3 server,
# starts the S3 server and a scratch database on the local PostgreSQL, seeds a few generated
# videos (one corrupt) as approved uploads, runs one sync pass, shows what happened, then
# serves the archive with a working signed link. Ctrl-C stops it and cleans everything up.
#
# Non-interactive runs (no terminal) stop after printing the link; DEMO_SERVE_SECONDS=N
# serves for N seconds instead of waiting for Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need_ffmpeg
need_curl
need_postgres
echo "==> building r2-sync (release)"
cargo build --locked --release -q -p r2-sync -p r2-sync-test-s3
BIN=$PWD/target/release

WORK=$(mktemp -d /tmp/r2-sync-demo.XXXXXX)
DB="r2sync_demo_$$"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    drop_scratch_db "$DB"
    rm -rf "$WORK"
    echo "==> demo cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> starting the S3 server and a scratch database"
mkdir -p "$WORK/s3/media" "$WORK/archive" "$WORK/state" "$WORK/src"
start_test_s3 "$BIN/r2-sync-test-s3" "$WORK/s3"
PIDS+=("$S3_PID")
create_scratch_db "$DB"

echo "==> generating and uploading media"
gen_video "$WORK/src/sunset.mp4" 3 440
gen_video "$WORK/src/concert.mkv" 4 660
gen_video "$WORK/src/cat video.mp4" 2 550
head -c 200000 /dev/urandom >"$WORK/src/broken.mp4"
n=0
for f in "sunset.mp4" "concert.mkv" "cat video.mp4" "broken.mp4"; do
    n=$((n + 1))
    key="uploads/user7/$n-$(echo "$f" | tr ' ' '_')"
    s3_upload "$WORK/src/$f" "media/$key"
    insert_approved "$DB" "$key" "$WORK/src/$f" "Demo $n" >/dev/null
    echo "    $key  ($(stat -c %s "$WORK/src/$f") bytes, approved)"
done

export DB_HOST=127.0.0.1 DB_PORT=5432 DB_NAME="$DB" DB_USER=postgres DB_SSLMODE=disable
export R2_ENDPOINT="$S3" R2_ACCESS_KEY="$S3_ACCESS_KEY" R2_SECRET_KEY="$S3_SECRET_KEY" R2_BUCKET=media
export ARCHIVE_DIR="$WORK/archive" STATE_DIR="$WORK/state"
export UNRAID_TUNNEL_SECRET="demo-only-secret-demo-only-secret-0123456789"
SERVER_PORT="${DEMO_PORT:-$(free_port)}"
HEALTH_PORT="$(free_port)"
export SERVER_PORT HEALTH_PORT

echo "==> r2-sync check"
"$BIN/r2-sync" check
echo "==> one sync pass (JSON logs in $WORK/sync.log)"
"$BIN/r2-sync" sync --once >"$WORK/sync.log" || true
grep -E '"msg":"(pass finished|file failed; object kept in the bucket)"' "$WORK/sync.log" || true

echo "==> outcome"
psql -h 127.0.0.1 -U postgres -d "$DB" -P pager=off -c \
    "SELECT m.id, m.original_filename, m.status, coalesce(m.archive_path, '-') AS archive_path,
            (SELECT string_agg(a.action, ',') FROM audit_logs a WHERE a.entity_id = m.id) AS audit
     FROM media m ORDER BY m.id"
echo "==> left in the bucket (only what must stay):"
(cd "$WORK/s3/media" && find . -type f ! -name '.*' | sed 's|^\./|    |')
echo "==> the archive:"
(cd "$WORK/archive" && find . -path ./.r2-sync-tmp -prune -o -type f -print | sort | sed 's|^\./|    |')
"$BIN/r2-sync" status

echo "==> serving on port $SERVER_PORT (health on $HEALTH_PORT)"
echo "    the dashboard (what r2-sync is doing, did, and what needs you): http://127.0.0.1:$HEALTH_PORT/"
"$BIN/r2-sync" serve >"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$HEALTH_PORT/health" >/dev/null && break; sleep 0.05; done
id=$(psql -h 127.0.0.1 -U postgres -d "$DB" -tAc "SELECT id FROM media WHERE status = 'archived' ORDER BY id LIMIT 1")
link=$("$BIN/r2-sync" token --media-id "$id" --user-id 7 --ttl 1h --base-url "http://127.0.0.1:$SERVER_PORT")
echo
echo "A signed link for media $id, valid for an hour:"
echo "    $link"
echo "Download it:"
echo "    curl -o demo.mp4 '$link'"
echo "Seek in it (what a browser's <video> does):"
printf '    curl -r 1000-1999 -o /dev/null -w %s %s\n' "'%{http_code} %{size_download} bytes\\n'" "'$link'"
code=$(curl -s -o /dev/null -w '%{http_code}' "$link")
bad=$(curl -s -o /dev/null -w '%{http_code}' "${link%%\?*}?token=forged")
echo "(checked just now: the link answers $code, the same path with a forged token $bad)"

if [ -n "${DEMO_SERVE_SECONDS:-}" ]; then
    sleep "$DEMO_SERVE_SECONDS"
elif [ -t 0 ]; then
    echo "Serving until Ctrl-C..."
    wait
fi
