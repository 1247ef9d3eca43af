#!/usr/bin/env bash
# Benchmark harness (`make bench`; issue 6). Never part of the test suite.
#
# Measures r2-sync against the tools it replaces, on this machine: rclone for syncing (from
# the same test S3 server the tests use, release build) and nginx for serving. Builds the
# release binaries, starts the S3 server on a free port with a temp root, creates a scratch
# PostgreSQL database from schema/backend.sql, generates the data, runs each pair
# alternately BENCH_RUNS times, and prints one markdown table of medians and ratios, also
# written (with the machine's description) to BENCHMARKS.md.
#
# Rows 1 and 3 have a second baseline: bench/bash-loop.sh, the bash + rclone service r2-sync
# replaces (what users run today), rebuilt from the workflow in the original plan (psql
# SELECT; per row rclone copyto, Debian's /usr/bin/ffprobe, mv, a jq sidecar, psql UPDATE +
# audit INSERT, rclone deletefile; one file at a time; its header says where each step comes
# from). It runs on the same rows and re-uploaded objects as r2-sync, and the same checks
# follow every pass of both (bench/verify_archive.py: rows archived with audit rows, files
# and sidecars in the archive, objects gone from the bucket). It is slow by design: two rclone
# processes a file cost ~0.3 CPU-s, so row 3's 2,000 objects take it 10-20 minutes a run.
#
# r2-sync's timed passes use the two minimal static ffprobes the image ships (FFPROBE_PATH and
# FFPROBE_DEMUX_PATH: the paths scripts/build-ffprobe.sh [--demux-only] prints, built and
# cached under target/ffprobe the first time, a few minutes each); row 6 gives their CPU per
# file beside Debian's full ffprobe.
#
# Settings (environment):
#   BENCH_RUNS=3          runs of each pair
#   BENCH_LOOP_RUNS=1     of those runs, how many also time the bash + rclone loop (row 3
#                         takes it ~10 minutes a run: the loop's own spread is not the point)
#   BENCH_VIDEOS=20       ~50 MB videos for row 1
#   BENCH_BIG_MIB=2048    the big object of rows 2 and 4
#   BENCH_SMALL_FILES=2000  100 KB objects for row 3
#   BENCH_SERVE_MIB=1024  the file served in row 5
#   BENCH_WRK_SECS=10     duration of each wrk run
#   BENCH_SERVE_RUNS=7    runs of each serving pair (row 5: short and noisy, so more than
#                         BENCH_RUNS; the report shows the median and the min–max spread)
#   BENCH_SERVE_PERF=FILE  after the serving runs, one more ranged run of r2-sync (not
#                         recorded) under perf record -g, written to FILE (perf report -i FILE)
#   BENCH_SERVE_CPUS=0    the CPU set (taskset -c) both servers of row 5 are pinned to; the
#                         client (curl, wrk) runs on the other CPUs (BENCH_CLIENT_CPUS, by
#                         default every CPU not in the set, or the same set on one CPU)
#   BENCH_LEDGER_ENTRIES="10000 1000000"  ledger sizes for the ledger rows (N finished
#                         entries in the ledger, N archived rows in PostgreSQL)
#   BENCH_ONLY="videos big small resume serve context ledger"  a subset, for working on the
#                         harness; BENCH_ONLY=ledger alone updates only the ledger section of
#                         BENCH_OUT and keeps the rest of the file; BENCH_ONLY=serve alone, the
#                         serving section and row 5 of the results table
#   BENCH_OUT=BENCHMARKS.md
#   BENCH_SKIP_BUILD=1    use the binaries already in target/release
#   BENCH_R2_ENV="SYNC_CONCURRENCY=8"   extra settings for every timed r2-sync pass
#   BENCH_R2_WRAP="strace -f -c -o /tmp/r2.strace"   a profiler to run r2-sync under
#   BENCH_FS=xfs          filesystem for the archive and rclone's destination: a fresh one in a
#                         loop-mounted image on the same disk (xfs, ext4), or "none" for the
#                         work directory's own
#
# Everything started here is stopped, the scratch database dropped and the temp dir removed
# on exit, on failure and on Ctrl-C.
set -Eeuo pipefail
export LC_ALL=C # EPOCHREALTIME and printf must use '.' decimals
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib.sh

RUNS=${BENCH_RUNS:-3}
LOOP_RUNS=${BENCH_LOOP_RUNS:-1}
VIDEOS=${BENCH_VIDEOS:-20}
BIG_MIB=${BENCH_BIG_MIB:-2048}
SMALL_FILES=${BENCH_SMALL_FILES:-2000}
SMALL_BYTES=100000
SERVE_MIB=${BENCH_SERVE_MIB:-1024}
WRK_SECS=${BENCH_WRK_SECS:-10}
SERVE_RUNS=${BENCH_SERVE_RUNS:-7}
SERVE_CPUS=${BENCH_SERVE_CPUS:-0}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-}
ONLY=${BENCH_ONLY:-videos big small resume serve context ledger}
LEDGER_ENTRIES=${BENCH_LEDGER_ENTRIES:-10000 1000000}
LEDGER_REQUESTS=50 # GETs of /metrics and of /status per size
LEDGER_INTERVAL=2s # SYNC_INTERVAL of the ledger rows' `run`: passes with nothing to claim
LEDGER_PASSES=5    # passes of that run whose elapsed_ms is taken
OUT=${BENCH_OUT:-BENCHMARKS.md}
BIN=$ROOT/target/release

ACCESS_KEY=bench-access
SECRET_KEY=bench-secret-key
TUNNEL_SECRET=bench-tunnel-secret-0123456789abcdef-0123456789
BUCKET=media

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    printf 'bench: FAILED: %s\n' "$*" >&2
    exit 1
}
trap 'printf "bench: FAILED at %s line %s: %s\n" "${BASH_SOURCE[0]}" "$LINENO" "$BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------------------------------
# Clean-up: every background process we start is recorded in PIDS.

WORK=
DISK=
LOOP=
S3_ROOT=
DB=
PIDS=()
cleanup() {
    local rc=$?
    trap - ERR
    trap '' PIPE # whoever read our output may be gone (Ctrl-C on `make bench | tee`)
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "$DB" ]; then
        psql -h 127.0.0.1 -U postgres -qXc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    fi
    if [ -n "$LOOP" ]; then
        umount "$DISK" 2>/dev/null
        losetup -d "$LOOP" 2>/dev/null
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    [ -n "$S3_ROOT" ] && rm -rf "$S3_ROOT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wants() { [[ " $ONLY " == *" $1 "* ]]; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# seconds between two $EPOCHREALTIME values
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# arithmetic on decimals: calc 'EXPR' (awk syntax)
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# ---------------------------------------------------------------------------------------
# Set-up

need_tools() {
    need_ffmpeg
    need_postgres
    local missing=()
    if wants videos || wants big || wants small || wants resume || wants serve || wants context; then
        command -v rclone >/dev/null || missing+=(rclone)
    fi
    # The bash loop (rows 1 and 3) runs Debian's full ffprobe and writes its sidecars with jq.
    if wants videos || wants small; then
        command -v jq >/dev/null || missing+=(jq)
    fi
    [ -x /usr/bin/ffprobe ] || missing+=(ffmpeg)
    if wants serve; then
        command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
        command -v wrk >/dev/null || missing+=(wrk)
    fi
    command -v curl >/dev/null || missing+=(curl)
    [ -x /usr/bin/time ] || missing+=(time) # GNU time, for peak RSS (-v)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# The versions of the tools this run uses.
tool_versions() {
    local v
    v="r2-sync $("$BIN/r2-sync" --version | awk '{ print $2 }') ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src state 2>/dev/null || echo "+uncommitted"))"
    if command -v rclone >/dev/null; then v+=", $(rclone version | sed -n 1p)"; fi
    if [ -x "$NGINX" ]; then v+=", $("$NGINX" -v 2>&1 | sed 's/.*: //')"; fi
    if command -v wrk >/dev/null; then v+=", $( (wrk -v 2>&1 || true) | sed -n 1p | cut -d' ' -f1-2)"; fi
    if command -v jq >/dev/null; then v+=", $(jq --version)"; fi
    v+=", Debian's $(/usr/bin/ffprobe -version | sed -n '1s/ Copyright.*//p')"
    v+=", $(psql -h 127.0.0.1 -U postgres -d postgres -qAtXc 'SHOW server_version' | sed 's/^/PostgreSQL /;s/ (.*//')"
    echo "$v"
}

# The bucket lives in /dev/shm when it has room: R2 is remote, so neither its storage nor the
# deletes r2-sync sends it should load the archive's disk.
start_s3() {
    S3_ROOT="$WORK/s3"
    local shm_kb
    shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    if [ "${shm_kb:-0}" -gt $(((BIG_MIB + SERVE_MIB + 4096) * 1024)) ]; then
        S3_ROOT=$(mktemp -d /dev/shm/r2-sync-bench-s3.XXXXXX)
    fi
    mkdir -p "$S3_ROOT/$BUCKET"
    "$BIN/r2-sync-test-s3" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$S3_ROOT" \
        >"$WORK/s3.out" 2>"$WORK/s3.err" &
    S3_PID=$!
    PIDS+=("$S3_PID")
    local addr=
    for _ in $(seq 1 100); do
        addr=$(sed -n 's/^listening on //p' "$WORK/s3.out")
        [ -n "$addr" ] && break
        kill -0 "$S3_PID" 2>/dev/null || die "the test S3 server exited: $(cat "$WORK/s3.err")"
        sleep 0.1
    done
    [ -n "$addr" ] || die "the test S3 server did not say 'listening on' within 10 s"
    S3_URL="http://$addr"

    # rclone's remote `bench:` from the environment alone: no config file is read. Other
    # RCLONE_* and AWS_* variables are dropped: AWS_CA_BUNDLE, for one, makes rclone refuse
    # to build its HTTP client ("LoadCustomCABundleError"), and the endpoint is plain HTTP.
    while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(RCLONE|AWS)_' || true)
    : >"$WORK/rclone.conf"
    export RCLONE_CONFIG="$WORK/rclone.conf"
    export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
    export RCLONE_CONFIG_BENCH_ENDPOINT="$S3_URL" RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
    export RCLONE_CONFIG_BENCH_REGION=auto RCLONE_CONFIG_BENCH_NO_CHECK_BUCKET=true
    export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$ACCESS_KEY" RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$SECRET_KEY"
}

# Body bytes the S3 server has sent in answer to GETs so far.
s3_sent() { curl -fsS "$S3_URL/_stats" | sed -n 's/.*"get_body_bytes":\([0-9]*\).*/\1/p'; }
# CPU seconds (user+sys) the S3 server has used so far.
s3_cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$S3_PID/stat"; }
# CPU seconds PostgreSQL has used so far: its processes now, plus the backends that have
# exited (the postmaster's reaped children, its cutime + cstime).
pg_cpu() {
    local pm
    pm=$(pgrep -o -x postgres) || {
        echo 0
        return
    }
    for p in $(pgrep -x postgres); do cat "/proc/$p/stat" 2>/dev/null || true; done |
        awk -v pm="$pm" '{ s += $14 + $15; if ($1 == pm) s += $16 + $17 } END { printf "%.2f", s / 100 }'
}

create_db() {
    DB="r2sync_bench_$$"
    psql -h 127.0.0.1 -U postgres -qXc "CREATE DATABASE $DB" >/dev/null
    psql_q -f schema/backend.sql >/dev/null
}
psql_q() { PGOPTIONS='-c client_min_messages=warning' psql -h 127.0.0.1 -U postgres -d "$DB" -qAtX -v ON_ERROR_STOP=1 "$@"; }

# r2-sync's environment, as in tests/it/common/mod.rs Rig::env; nothing else is inherited.
r2_env() {
    R2ENV=(PATH="$PATH" DB_HOST=127.0.0.1 DB_PORT=5432 DB_NAME="$DB" DB_USER=postgres DB_SSLMODE=disable
        R2_ENDPOINT="$S3_URL" R2_ACCESS_KEY="$ACCESS_KEY" R2_SECRET_KEY="$SECRET_KEY" R2_BUCKET="$BUCKET"
        ARCHIVE_DIR="$DISK/archive" STATE_DIR="$WORK/state" UNRAID_TUNNEL_SECRET="$TUNNEL_SECRET"
        SERVER_PORT=0 HEALTH_PORT=0 LOG_LEVEL=info FFPROBE_PATH="$MIN_FFPROBE" FFPROBE_DEMUX_PATH="$DEMUX_FFPROBE")
}

# The minimal static ffprobe r2-sync's image ships (scripts/build-ffprobe.sh prints its path
# last; a cached build is instant). Without FFPROBE_PATH r2-sync would run whatever ffprobe
# PATH finds first: Debian's full one here, which the image does not have.
MIN_FFPROBE=
DEMUX_FFPROBE=
min_ffprobe() {
    say "the minimal ffprobe (scripts/build-ffprobe.sh; a few minutes when not cached)"
    MIN_FFPROBE=$(./scripts/build-ffprobe.sh | tail -n 1) || die "scripts/build-ffprobe.sh failed"
    [ -x "$MIN_FFPROBE" ] || die "scripts/build-ffprobe.sh printed '$MIN_FFPROBE', not an executable"
    "$MIN_FFPROBE" -version >/dev/null || die "$MIN_FFPROBE -version failed"
    # "Debian ffmpeg <version>, built in N s: <its configure line>": the version, and the
    # folder named for the hash of the configure options.
    MIN_FFPROBE_BUILD="$(sed -n '1s/, built in .*//p' "$(dirname "$MIN_FFPROBE")/BUILD" 2>/dev/null), configure options $(basename "$(dirname "$MIN_FFPROBE")")"
    # ffprobe-demux, which r2-sync asks first (FFPROBE_DEMUX_PATH): it settles MP4/MOV alone.
    DEMUX_FFPROBE=$(./scripts/build-ffprobe.sh --demux-only | tail -n 1) || die "scripts/build-ffprobe.sh --demux-only failed"
    "$DEMUX_FFPROBE" -version >/dev/null || die "$DEMUX_FFPROBE -version failed"
}

# Earlier runs' output is moved aside, not deleted, until the end. This machine's disk is
# ext4 without a journal, whose inode allocator skips inodes freed in the last minute (six while dirty) one by
# one (recently_deleted): after an `rm -rf` of thousands of files, every file created next
# cost a scan past them, and whichever tool ran next paid for the previous one's clean-up.
discard() {
    local dir trash
    for dir in "$@"; do
        [ -e "$dir" ] || continue
        trash="$(dirname "$dir")/trash"
        mkdir -p "$trash"
        mv "$dir" "$(mktemp -d "$trash/XXXXXX")/"
    done
    return 0
}

# The archive and rclone's destination share a filesystem made fresh for this run, in a
# sparse image on the work directory's disk (loop device, direct I/O so nothing is cached
# twice): the NAS's own kind (Unraid formats its array XFS), and no earlier work's deleted
# inodes or dirty metadata on it. BENCH_FS=none uses the work directory as it is.
mount_disk() {
    DISK="$WORK"
    local fs=${BENCH_FS:-xfs}
    [ "$fs" = none ] && return 0
    command -v "mkfs.$fs" >/dev/null || apt_install "$([ "$fs" = xfs ] && echo xfsprogs || echo e2fsprogs)"
    truncate -s 64G "$WORK/disk.img"
    "mkfs.$fs" -q "$WORK/disk.img" >/dev/null 2>&1 || die "mkfs.$fs failed on $WORK/disk.img"
    LOOP=$(losetup --direct-io=on --show -f "$WORK/disk.img") || die "no loop device (BENCH_FS=none skips this)"
    mkdir -p "$WORK/disk"
    mount "$LOOP" "$WORK/disk" || die "cannot mount $LOOP (BENCH_FS=none skips this)"
    DISK="$WORK/disk"
}

# A clean slate for r2-sync: no rows, no leases, empty archive and state (ledger).
reset_r2sync() {
    psql_q -c "TRUNCATE media, audit_logs RESTART IDENTITY; DROP TABLE IF EXISTS r2_sync_leases" >/dev/null
    discard "$DISK/archive" "$WORK/state"
    mkdir -p "$DISK/archive" "$WORK/state"
}

# insert_rows PREFIX COUNT EXT CONTENT_TYPE SIZE: approved rows for keys PREFIX/f0001.EXT…,
# with the size the backend records at upload.
insert_rows() {
    psql_q -c "INSERT INTO media (user_id, title, original_filename, content_type, file_size, r2_key, status,
                   storage_location, approved_at)
               SELECT 7, 'bench', format('f%s.$3', lpad(g::text, 4, '0')), '$4', $5,
                      format('$1/f%s.$3', lpad(g::text, 4, '0')), 'approved', 'r2', now()
               FROM generate_series(1, $2) g" >/dev/null
}

# upload DIR PREFIX: puts what is missing under bucket/PREFIX (r2-sync deletes what it
# archived; rclone leaves the objects). Untimed. --size-only: the sources never change.
# Remote paths end in '/' everywhere: without it rclone first HEADs `media/PREFIX` to see
# whether it is a file, the test server answers 500 (s3s-fs finds a directory there), and
# rclone's retries add ~90 s to every command.
upload() {
    rclone copy "$1" "bench:$BUCKET/$2/" --size-only --transfers 8 --checkers 16 \
        || die "uploading $1 to the test S3 server failed"
}

# ---------------------------------------------------------------------------------------
# Measuring

RESULTS=
# record KEY SUBJECT RUN VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# timed SECTION SUBJECT RUN CMD...: runs CMD under GNU time after flushing earlier runs'
# dirty pages (so their writeback does not land on this run); records wall seconds, CPU
# seconds, peak RSS and the S3 server's CPU seconds; sets T_SECS and T_CPU. Fails loudly.
# CPU seconds are GNU time's user + sys of CMD and every descendant it waited for (the whole
# tree: r2-sync's ffprobes, the bash loop's rclone, ffprobe, psql, jq and mv); peak RSS is
# its "Maximum resident set size": the largest one process of that tree reached, not a sum.
timed() {
    local section=$1 subject=$2 run=$3
    shift 3
    local label="$section-$subject-$run"
    local tf="$WORK/logs/$label.time" log="$WORK/logs/$label.log"
    sync
    local c0 c1 p0 p1 t0 t1
    c0=$(s3_cpu)
    p0=$(pg_cpu)
    t0=$EPOCHREALTIME
    local rc=0
    /usr/bin/time -v -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 20 "$log" >&2
        die "$label failed with exit status $rc (its last log lines are above)"
    fi
    t1=$EPOCHREALTIME
    c1=$(s3_cpu)
    p1=$(pg_cpu)
    T_SECS=$(elapsed "$t0" "$t1")
    local rss_kb cpu
    rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tf")
    cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$tf")
    T_CPU=$cpu
    record "$section.wall_s" "$subject" "$run" "$T_SECS"
    record "$section.cpu_s" "$subject" "$run" "$cpu"
    record "$section.rss_mib" "$subject" "$run" "$(calc "$rss_kb / 1024")"
    record "$section.s3cpu_s" "$subject" "$run" "$(calc "$c1 - $c0")"
    record "$section.pgcpu_s" "$subject" "$run" "$(calc "$p1 - $p0")"
    say "  $label: ${T_SECS}s, CPU ${cpu}s, peak RSS $((rss_kb / 1024)) MiB"
}

# Runs are alternated, and the order rotates from run to run so neither tool always goes
# first (warm caches, the other tool's writeback).
rotate() { # rotate RUN ITEM...: the items, starting at (RUN-1) mod N
    local run=$1
    shift
    local items=("$@") n=$#
    for ((i = 0; i < n; i++)); do echo "${items[$(((run - 1 + i) % n))]}"; done
}

# r2_sync_pass SECTION SUBJECT RUN EXPECTED ENV...: one timed `r2-sync sync --once`, checked.
r2_sync_pass() {
    local section=$1 subject=$2 run=$3 expected=$4
    shift 4
    local extra=() wrap=()
    read -ra extra <<<"${BENCH_R2_ENV:-}"
    read -ra wrap <<<"${BENCH_R2_WRAP:-}"
    timed "$section" "$subject" "$run" env -i "${R2ENV[@]}" "$@" "${extra[@]}" "${wrap[@]}" "$BIN/r2-sync" sync --once
    verify_synced "$section" r2-sync "$expected"
}

# bash_loop_pass SECTION RUN EXPECTED ENV...: one timed pass of the bash + rclone loop
# (bench/bash-loop.sh --once) over the rows in the database, with r2-sync's settings (the
# same variables) and ENV, checked as r2-sync's passes are.
bash_loop_pass() {
    local section=$1 run=$2 expected=$3
    shift 3
    timed "$section" bashloop "$run" env -i "${R2ENV[@]}" RCLONE_CONFIG="$WORK/rclone.conf" "$@" \
        "$ROOT/bench/bash-loop.sh" --once
    verify_synced "$section" "the bash loop" "$expected"
}

# verify_synced SECTION WHO EXPECTED: after a sync pass over EXPECTED approved rows (the
# only rows in the database), every row is archived with its one media.archived audit row,
# its file and sidecar are in the archive, its object is gone from the bucket.
verify_synced() {
    local section=$1 who=$2 expected=$3 counts out
    counts=$(psql_q -F ' ' -c "SELECT (SELECT count(*) FROM media WHERE status = 'archived'),
                                      (SELECT count(*) FROM media WHERE status <> 'archived'),
                                      (SELECT count(DISTINCT entity_id) FROM audit_logs
                                       WHERE action = 'media.archived' AND entity_type = 'media'
                                         AND entity_id IN (SELECT id FROM media WHERE status = 'archived'))")
    [ "$counts" = "$expected 0 $expected" ] ||
        die "$section: $who left $(cut -d' ' -f1 <<<"$counts") of $expected rows archived, $(cut -d' ' -f2 <<<"$counts") not archived, $(cut -d' ' -f3 <<<"$counts") with a media.archived audit row (log: $WORK/logs)"
    out=$(psql_q -F $'\t' -c "SELECT id, archive_path, file_size, r2_key FROM media WHERE status = 'archived'" |
        python3 bench/verify_archive.py "$DISK/archive" "$S3_ROOT/$BUCKET" "$expected" 2>&1) ||
        die "$section: after $who: $out"
    say "  checked: $out"
}

# rclone_pass SECTION RUN PREFIX EXPECTED: one timed `rclone copy` with default settings.
rclone_pass() {
    local section=$1 run=$2 prefix=$3 expected=$4
    discard "$DISK/dest"
    timed "$section" rclone "$run" rclone copy "bench:$BUCKET/$prefix/" "$DISK/dest"
    local got
    got=$(find "$DISK/dest" -type f | wc -l)
    [ "$got" -eq "$expected" ] || die "$section: rclone copied $got of $expected files"
}

# ---------------------------------------------------------------------------------------
# Data

# One ~50 MB video (10 s of 720p testsrc with noise, so x264 cannot compress it below
# 40 Mbit/s), hard-linked BENCH_VIDEOS times under different names.
make_videos() {
    mkdir -p "$WORK/src/videos"
    local one="$WORK/src/one.mp4"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i testsrc=duration=10:size=1280x720:rate=30 -f lavfi -i sine=frequency=440:duration=10 \
        -vf noise=alls=30:allf=t+u -c:v libx264 -preset ultrafast -b:v 40M -maxrate 40M -bufsize 40M \
        -c:a aac -shortest "$one" || die "ffmpeg could not generate the benchmark video"
    for i in $(seq -f %04g 1 "$VIDEOS"); do ln "$one" "$WORK/src/videos/f$i.mp4"; done
    VIDEO_BYTES=$(stat -c %s "$one")
}

make_big() {
    mkdir -p "$WORK/src/big"
    head -c "${BIG_MIB}M" /dev/urandom >"$WORK/src/big/f0001.bin"
    BIG_BYTES=$(stat -c %s "$WORK/src/big/f0001.bin")
}

make_small() {
    mkdir -p "$WORK/src/small"
    python3 - "$WORK/src/small" "$SMALL_FILES" "$SMALL_BYTES" <<'EOF'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(1, n + 1):
    with open(f"{d}/f{i:04d}.bin", "wb") as f:
        f.write(os.urandom(size))
EOF
}

# ---------------------------------------------------------------------------------------
# with_loop RUN SUBJECT...: the subjects, and the bash loop too in the first LOOP_RUNS runs.
with_loop() {
    local run=$1
    shift
    printf '%s\n' "$@"
    [ "$run" -gt "$LOOP_RUNS" ] || echo bashloop
}

# Row 1: many videos, ffprobe on each (r2-sync's normal work).

# record_sync SECTION SUBJECT RUN FILES BYTES: files/s and CPU-s per GB archived (or copied, for
# rclone) of the run timed last.
record_sync() {
    record "$1.fps" "$2" "$3" "$(calc "$4 / $T_SECS")"
    record "$1.cpu_per_gb" "$2" "$3" "$(calc "$T_CPU / ($5 / 1e9)")"
}

bench_videos() {
    say "row 1: $VIDEOS videos of $VIDEO_BYTES bytes"
    local total=$((VIDEOS * VIDEO_BYTES))
    for run in $(seq 1 "$RUNS"); do
        mapfile -t subjects < <(with_loop "$run" r2sync_c2 rclone r2sync_c4)
        for subject in $(rotate "$run" "${subjects[@]}"); do
            upload "$WORK/src/videos" videos
            case $subject in
            rclone) rclone_pass videos "$run" videos "$VIDEOS" ;;
            bashloop)
                reset_r2sync
                insert_rows videos "$VIDEOS" mp4 video/mp4 "$VIDEO_BYTES"
                bash_loop_pass videos "$run" "$VIDEOS" BATCH_SIZE="$VIDEOS"
                ;;
            r2sync_c2 | r2sync_c4)
                reset_r2sync
                insert_rows videos "$VIDEOS" mp4 video/mp4 "$VIDEO_BYTES"
                local conc=()
                [ "$subject" = r2sync_c4 ] && conc=(SYNC_CONCURRENCY=4)
                r2_sync_pass videos "$subject" "$run" "$VIDEOS" BATCH_SIZE="$VIDEOS" "${conc[@]}"
                ;;
            esac
            record videos.mbps "$subject" "$run" "$(calc "$total / $T_SECS / 1e6")"
            record_sync videos "$subject" "$run" "$VIDEOS" "$total"
        done
        videos_floor "$run"
    done
}

# Row 1's context, in the same minute as each run of the row: what the contract makes
# r2-sync compute for these videos, alone: MD5 + SHA-256 of every byte (examples/
# hash_floor.rs, r2-sync's crates) and ffprobe on each file with r2-sync's arguments, by
# Debian's full ffprobe (subject ffprobe: what the bash service ran), by the one r2-sync runs
# on these MP4s (ffprobe_demux, FFPROBE_DEMUX_PATH: it settles them alone) and by the minimal
# full build (ffprobe_min, FFPROBE_PATH: what it runs on other containers), alternating; their
# CPU ms per file too.
videos_floor() {
    local run=$1 subject probe
    timed videofloor hashes "$run" "$BIN/examples/hash_floor" "$WORK/src/videos/"*.mp4
    for subject in $(rotate "$run" ffprobe ffprobe_demux ffprobe_min); do
        case $subject in
        ffprobe) probe=/usr/bin/ffprobe ;;
        ffprobe_demux) probe=$DEMUX_FFPROBE ;;
        *) probe=$MIN_FFPROBE ;;
        esac
        # shellcheck disable=SC2016 # expanded by the inner shell
        timed videofloor "$subject" "$run" bash -c 'probe=$1; shift; for f in "$@"; do
            "$probe" -v error -print_format json -show_format -show_streams -- "$f" >/dev/null || exit 1
        done' _ "$probe" "$WORK/src/videos/"*.mp4
        record videofloor.ms_per_file "$subject" "$run" "$(calc "$T_CPU * 1000 / $VIDEOS")"
    done
}

# sync_blobs_once SECTION PREFIX COUNT SIZE RUN SUBJECT: one timed run of SUBJECT (r2sync or
# bashloop, with ffprobe off since the objects are not media, or rclone) over the COUNT
# objects of SIZE bytes under PREFIX; sets T_SECS.
sync_blobs_once() {
    local section=$1 prefix=$2 count=$3 size=$4 run=$5 subject=$6
    upload "$WORK/src/$prefix" "$prefix"
    if [ "$subject" = rclone ]; then
        rclone_pass "$section" "$run" "$prefix" "$count"
    else
        reset_r2sync
        insert_rows "$prefix" "$count" bin application/octet-stream "$size"
        if [ "$subject" = bashloop ]; then
            bash_loop_pass "$section" "$run" "$count" BATCH_SIZE="$count" VALIDATE_MEDIA=false
        else
            r2_sync_pass "$section" r2sync "$run" "$count" BATCH_SIZE="$count" VALIDATE_MEDIA=false
        fi
    fi
}

# Row 2: one big object: throughput and peak memory.
bench_big() {
    say "row 2: one object of $BIG_BYTES bytes"
    for run in $(seq 1 "$RUNS"); do
        for subject in $(rotate "$run" r2sync rclone); do
            sync_blobs_once big big 1 "$BIG_BYTES" "$run" "$subject"
            record big.mbps "$subject" "$run" "$(calc "$BIG_BYTES / $T_SECS / 1e6")"
        done
    done
}

# Row 3: many small objects: per-file overhead.
bench_small() {
    say "row 3: $SMALL_FILES objects of $SMALL_BYTES bytes"
    for run in $(seq 1 "$RUNS"); do
        mapfile -t subjects < <(with_loop "$run" r2sync rclone)
        for subject in $(rotate "$run" "${subjects[@]}"); do
            sync_blobs_once small small "$SMALL_FILES" "$SMALL_BYTES" "$run" "$subject"
            record_sync small "$subject" "$run" "$SMALL_FILES" "$((SMALL_FILES * SMALL_BYTES))"
            if [ "$subject" = r2sync ]; then SMALL_R2_FPS=$(calc "$SMALL_FILES / $T_SECS"); fi
        done
    done
}

# Row 3's context: the S3 clients alone, without disk, database or ledger: 2,000 GETs with
# MD5 of each body, by r2-sync's own client code (examples/get_floor.rs: the call a pass makes
# for a small object, 16 at once as a pass does) and by rclone (md5sum --download, 16 at once;
# --disable ListR: the test server answers a listing without delimiter with nothing).
# The rows compare CPU time, which is what row 3 runs out of on 2 cores. Then the ledger
# alone (examples/ledger_floor.rs), on the same disk as a pass's (STATE_DIR under WORK).
bench_small_floor() {
    say "row 3 context: GET + MD5 of $SMALL_FILES objects, no disk"
    upload "$WORK/src/small" small
    for run in $(seq 1 "$RUNS"); do
        for subject in $(rotate "$run" rusts3 rclone); do
            case $subject in
            rclone)
                timed smallget rclone "$run" rclone md5sum --download --checkers 16 --disable ListR "bench:$BUCKET/small/"
                [ "$(wc -l <"$WORK/logs/smallget-rclone-$run.log")" -eq "$SMALL_FILES" ] ||
                    die "row 3 context: rclone md5sum did not hash $SMALL_FILES objects"
                ;;
            rusts3)
                local pair # subject:hashes
                for pair in rusts3_sha:md5+sha256 rusts3:md5; do
                    timed smallget "${pair%%:*}" "$run" env -i "${R2ENV[@]}" \
                        "$BIN/examples/get_floor" small bin "$SMALL_FILES" 16 "${pair#*:}"
                done
                ;;
            esac
        done
    done
    # The ledger alone, written as a pass writes it for these files, at the pass's pace.
    say "row 3 context: the ledger's writes for $SMALL_FILES files at ${SMALL_R2_FPS:-1500} files/s"
    for run in $(seq 1 "$RUNS"); do
        mkdir -p "$WORK/ledger-floor"
        rm -f "$WORK/ledger-floor/"*
        timed smallledger redb "$run" "$BIN/examples/ledger_floor" "$WORK/ledger-floor" "$SMALL_FILES" 128 "${SMALL_R2_FPS:-1500}"
    done
    # The kernel's part of the file work, on the archive's filesystem.
    say "row 3 context: the kernel's file work for $SMALL_FILES files (bench/file_floor.py)"
    for run in $(seq 1 "$RUNS"); do
        local secs
        sync
        secs=$(python3 bench/file_floor.py "$DISK/file-floor" "$SMALL_FILES" "$SMALL_BYTES") ||
            die "row 3 context: bench/file_floor.py failed"
        record filefloor.sys_s kernel "$run" "$secs"
        say "  filefloor-kernel-$run: system CPU ${secs}s"
        discard "$DISK/file-floor"
    done
}

# Row 4: bytes fetched again after a SIGKILL at half the big object. The S3 server counts the
# body bytes it sends; everything beyond one copy of the object was downloaded twice.
bench_resume() {
    say "row 4: SIGKILL at 50 % of $BIG_BYTES bytes, then run again"
    local half=$((BIG_BYTES / 2))
    for run in $(seq 1 "$RUNS"); do
        for subject in $(rotate "$run" r2sync rclone); do
            upload "$WORK/src/big" big
            sync
            local before after at pid
            before=$(s3_sent)
            if [ "$subject" = rclone ]; then
                discard "$DISK/dest"
                rclone copy "bench:$BUCKET/big/" "$DISK/dest" >"$WORK/logs/resume-rclone-$run.log" 2>&1 &
                pid=$!
                PIDS+=("$pid")
                at=$(python3 bench/kill_at.py --pid "$pid" --at "$half" --stats-url "$S3_URL/_stats" --base "$before") ||
                    die "row 4: could not kill rclone at 50 %"
                wait "$pid" 2>/dev/null || true
                rclone copy "bench:$BUCKET/big/" "$DISK/dest" >>"$WORK/logs/resume-rclone-$run.log" 2>&1 ||
                    die "row 4: rclone's second run failed (see $WORK/logs)"
                [ "$(stat -c %s "$DISK/dest/f0001.bin")" -eq "$BIG_BYTES" ] || die "row 4: rclone's copy is incomplete"
            else
                reset_r2sync
                insert_rows big 1 bin application/octet-stream "$BIG_BYTES"
                # (under the instance's own folder: a pattern kill_at.py resolves as it polls)
                local part="$DISK/archive/.r2-sync-tmp/*/1.part"
                env -i "${R2ENV[@]}" BATCH_SIZE=1 VALIDATE_MEDIA=false "$BIN/r2-sync" sync --once \
                    >"$WORK/logs/resume-r2sync-$run.log" 2>&1 &
                pid=$!
                PIDS+=("$pid")
                at=$(python3 bench/kill_at.py --pid "$pid" --at "$half" --file "$part") ||
                    die "row 4: could not kill r2-sync at 50 % (log: $(tail -n 5 "$WORK/logs/resume-r2sync-$run.log"))"
                wait "$pid" 2>/dev/null || true
                env -i "${R2ENV[@]}" BATCH_SIZE=1 VALIDATE_MEDIA=false "$BIN/r2-sync" sync --once \
                    >>"$WORK/logs/resume-r2sync-$run.log" 2>&1 ||
                    die "row 4: r2-sync's second run failed: $(tail -n 5 "$WORK/logs/resume-r2sync-$run.log")"
                [ "$(psql_q -c "SELECT status FROM media WHERE id = 1")" = archived ] ||
                    die "row 4: r2-sync did not archive the object after the restart"
            fi
            after=$(s3_sent)
            local again=$((after - before - BIG_BYTES))
            say "  resume-$subject-$run: killed at $at bytes; downloaded again $again bytes"
            record resume.pct "$subject" "$run" "$(calc "100 * $again / $BIG_BYTES")"
            record resume.bytes "$subject" "$run" "$again"
        done
    done
}

# ---------------------------------------------------------------------------------------
# Row 5: serving, r2-sync vs nginx over the same directory.

SERVE_DIR=
make_serve_file() {
    SERVE_DIR="$WORK/serve"
    mkdir -p "$SERVE_DIR/bench"
    head -c "${SERVE_MIB}M" /dev/urandom >"$SERVE_DIR/bench/serve.bin"
    SERVE_BYTES=$(stat -c %s "$SERVE_DIR/bench/serve.bin")
}

start_nginx() {
    NGINX_PORT=$(free_port)
    local dir="$WORK/nginx"
    mkdir -p "$dir"
    local user_line=
    [ "$(id -u)" -eq 0 ] && user_line="user root;" # the temp dir is 0700
    cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes $(cpu_count "$SERVE_CPUS");
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $SERVE_DIR;
    }
}
EOF
    taskset -c "$SERVE_CPUS" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    # The report prints the config (with the temp dir's paths as they were).
    cp "$dir/nginx.conf" "$WORK/nginx.conf.txt"
    meta nginx_conf_file "$WORK/nginx.conf.txt"
    wait_http "http://127.0.0.1:$NGINX_PORT/bench/serve.bin" || die "nginx did not start: $(cat "$dir/error.log")"
    NGINX_URL="http://127.0.0.1:$NGINX_PORT/${SERVE_REL:-bench/serve.bin}"
}

# The "msg" of the last JSON log line in a file (or its last line), for a one-line reason.
last_msg() {
    local line
    line=$(tail -n 1 "$1")
    sed -n 's/.*"msg":"\([^"]*\)".*/\1/p' <<<"$line" | grep . || cut -c1-100 <<<"$line"
}

# wait_http URL [PID]: until URL answers (any status below 500), at most 10 s.
wait_http() {
    for _ in $(seq 1 100); do
        local code
        code=$(curl -s -o /dev/null -r 0-0 -w '%{http_code}' "$1" || true)
        [ "$code" != 000 ] && [ "$code" -lt 500 ] && return 0
        [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

# Starts `r2-sync serve` over SERVE_DIR and gets a signed URL; on any failure sets
# SERVE_TODO to why and returns 1 (the file server is written separately and may not exist).
# The file served is one r2-sync archived itself (uploaded, then one `sync --once`), so its
# ledger knows it, as it knows every file it archived in production; SERVE_REL is its path,
# which nginx serves too.
start_r2sync_serve() {
    reset_r2sync
    upload "$SERVE_DIR/bench" servesrc
    local id
    id=$(psql_q -c "INSERT INTO media (user_id, title, original_filename, content_type, r2_key, status,
                        storage_location, approved_at)
                    VALUES (7, 'bench', 'serve.bin', 'application/octet-stream', 'servesrc/serve.bin',
                        'approved', 'r2', now()) RETURNING id")
    if ! env -i "${R2ENV[@]}" ARCHIVE_DIR="$SERVE_DIR" VALIDATE_MEDIA=false "$BIN/r2-sync" sync --once \
        >"$WORK/logs/serve-sync.log" 2>&1; then
        SERVE_TODO="\`r2-sync sync --once\` could not archive the file to serve: $(last_msg "$WORK/logs/serve-sync.log")"
        return 1
    fi
    SERVE_REL=$(psql_q -c "SELECT archive_path FROM media WHERE id = $id AND status = 'archived'")
    [ -n "$SERVE_REL" ] || die "row 5: the file to serve was not archived"
    R2_PORT=$(free_port)
    local env=("${R2ENV[@]}" ARCHIVE_DIR="$SERVE_DIR" SERVER_PORT="$R2_PORT" HEALTH_PORT="$(free_port)" LOG_LEVEL=warn)
    if ! env -i "${env[@]}" "$BIN/r2-sync" token --help >/dev/null 2>&1; then
        SERVE_TODO="\`r2-sync token\` is not available"
        return 1
    fi
    taskset -c "$SERVE_CPUS" env -i "${env[@]}" "$BIN/r2-sync" serve >"$WORK/logs/serve.log" 2>&1 &
    R2_SERVE_PID=$!
    PIDS+=("$R2_SERVE_PID")
    if ! wait_http "http://127.0.0.1:$R2_PORT/health" "$R2_SERVE_PID"; then
        SERVE_TODO="\`r2-sync serve\` did not come up: $(last_msg "$WORK/logs/serve.log")"
        return 1
    fi
    R2_URL=$(env -i "${env[@]}" "$BIN/r2-sync" token --media-id "$id" --ttl 2h \
        --base-url "http://127.0.0.1:$R2_PORT" 2>"$WORK/logs/token.err" | grep -m1 -o 'http[^ ]*' || true)
    if [ -z "$R2_URL" ]; then
        SERVE_TODO="\`r2-sync token\` printed no URL ($(head -n 1 "$WORK/logs/token.err" | cut -c1-120))"
        return 1
    fi
    # Both servers must answer a 1 MiB range with exactly 1 MiB, or wrk measures nonsense.
    local got
    got=$(curl -s -o /dev/null -r 0-1048575 -w '%{http_code} %{size_download}' "$R2_URL")
    if [ "$got" != "206 1048576" ]; then
        SERVE_TODO="\`r2-sync serve\` answered a 1 MiB range with '$got', not '206 1048576'"
        return 1
    fi
}

# cpu_count LIST: how many CPUs a taskset list ("0", "0-1", "0,2-3") names.
cpu_count() {
    local n=0 part
    for part in ${1//,/ }; do
        if [[ "$part" == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
    done
    echo "$n"
}

# The client's CPUs: BENCH_CLIENT_CPUS, else every online CPU outside the servers' set (the
# servers' set itself on a one-CPU machine).
client_cpus() {
    if [ -n "$CLIENT_CPUS" ]; then
        echo "$CLIENT_CPUS"
        return
    fi
    local rest
    rest=$(python3 -c '
import os, sys
pinned = set()
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    pinned.update(range(int(a), int(b or a) + 1))
print(",".join(str(c) for c in sorted(os.sched_getaffinity(0) - pinned)))' "$SERVE_CPUS")
    echo "${rest:-$SERVE_CPUS}"
}

# server_cpu SUBJECT: CPU seconds (user+sys) the server has used so far, its children (nginx's
# workers) included.
server_cpu() {
    local pid
    pid=$([ "$1" = nginx ] && echo "$NGINX_PID" || echo "$R2_SERVE_PID")
    local pids=("$pid")
    # (ps exits 1 when there is no child)
    mapfile -t -O 1 pids < <(ps -o pid= --ppid "$pid" | tr -d ' ' || true)
    local ticks=0 p
    for p in "${pids[@]}"; do
        if ! [[ "$p" =~ ^[0-9]+$ ]] || [ ! -r "/proc/$p/stat" ]; then
            continue
        fi
        # utime and stime: fields 14 and 15, counted after the ")" that ends the command name.
        ticks=$((ticks + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
    done
    calc "$ticks / $(getconf CLK_TCK)"
}

# record_cpu_per_gb KEY SUBJECT RUN CPU0 CPU1 BYTES: the server's CPU seconds per GB of body.
record_cpu_per_gb() {
    record "$1" "$2" "$3" "$(calc "($5 - $4) / ($6 / 1e9)")"
}

# serve_one SUBJECT RUN URL: one client downloads the whole file.
serve_one() {
    local out size secs c0 c1
    c0=$(server_cpu "$1")
    out=$(taskset -c "$(client_cpus)" curl -fsS -o /dev/null -w '%{size_download} %{time_total}' "$3") ||
        die "row 5: GET $3 failed"
    c1=$(server_cpu "$1")
    read -r size secs <<<"$out"
    [ "$size" -eq "$SERVE_BYTES" ] || die "row 5: $1 sent $size of $SERVE_BYTES bytes"
    record serve1.mbps "$1" "$2" "$(calc "$size / $secs / 1e6")"
    record_cpu_per_gb serve1.cpu_per_gb "$1" "$2" "$c0" "$c1" "$size"
    say "  serve1-$1-$2: $(calc "$size / $secs / 1e6") MB/s, $(calc "($c1 - $c0) / ($size / 1e9)") CPU-s/GB"
}

# serve_ranges SUBJECT RUN URL: wrk, 64 connections, random 1 MiB ranges.
serve_ranges() {
    local log="$WORK/logs/wrk-$1-$2.log" c0 c1
    c0=$(server_cpu "$1")
    taskset -c "$(client_cpus)" wrk -t2 -c64 -d"${WRK_SECS}s" --latency -s bench/range.lua "$3" -- "$SERVE_BYTES" \
        >"$log" 2>&1 || die "row 5: wrk against $1 failed: $(tail -n 3 "$log")"
    c1=$(server_cpu "$1")
    if grep -qE 'Non-2xx|Socket errors' "$log"; then
        cat "$log" >&2
        die "row 5: wrk saw errors against $1 (above)"
    fi
    local rps requests
    rps=$(sed -n 's/^Requests\/sec: *//p' "$log")
    requests=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$log")
    if [ -z "$rps" ] || [ -z "$requests" ]; then
        die "row 5: no Requests/sec in wrk's output: $(cat "$log")"
    fi
    record range.rps "$1" "$2" "$rps"
    # Body bytes: every answer is a 1 MiB range (checked with curl before).
    record_cpu_per_gb range.cpu_per_gb "$1" "$2" "$c0" "$c1" "$((requests << 20))"
    say "  range-$1-$2: $rps req/s, $(calc "($c1 - $c0) / ($requests * 1048576 / 1e9)") CPU-s/GB"
}

# One ranged wrk run against r2-sync under perf record (call graphs), not recorded.
profile_ranges() {
    say "  profiling r2-sync serve under wrk into $BENCH_SERVE_PERF"
    perf record -F 999 -g -p "$R2_SERVE_PID" -o "$BENCH_SERVE_PERF" -- sleep "$WRK_SECS" \
        >"$WORK/logs/perf.log" 2>&1 &
    local perf_pid=$!
    taskset -c "$(client_cpus)" wrk -t2 -c64 -d"${WRK_SECS}s" -s bench/range.lua "$R2_URL" -- "$SERVE_BYTES" \
        >"$WORK/logs/wrk-profiled.log" 2>&1 || die "row 5: wrk under perf failed"
    wait "$perf_pid" || die "perf record failed: $(tail -n 3 "$WORK/logs/perf.log")"
    say "  under perf: $(sed -n 's/^Requests\/sec: *//p' "$WORK/logs/wrk-profiled.log") req/s; perf report -i $BENCH_SERVE_PERF"
}

# Idle RSS of `r2-sync run` (server + scheduler) after 5 s with nothing to do. Returns 1 with
# IDLE_TODO set when `run` does not stay up (it is being written separately).
idle_rss() {
    local env=("${R2ENV[@]}" ARCHIVE_DIR="$SERVE_DIR" SERVER_PORT="$(free_port)" HEALTH_PORT="$(free_port)"
        SYNC_INTERVAL=1h LOG_LEVEL=warn)
    env -i "${env[@]}" "$BIN/r2-sync" run >"$WORK/logs/run.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    sleep 5
    if ! kill -0 "$pid" 2>/dev/null; then
        IDLE_TODO="\`r2-sync run\` exited at once: $(last_msg "$WORK/logs/run.log")"
        return 1
    fi
    local kb
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    record idle.rss_mib r2sync 1 "$(calc "$kb / 1024")"
    say "  idle RSS of r2-sync run: $((kb / 1024)) MiB"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

bench_serve() {
    say "row 5: serving a $SERVE_BYTES-byte file"
    local have_r2=yes
    SERVE_TODO=
    SERVE_REL=
    start_r2sync_serve || have_r2=
    [ -z "$have_r2" ] && say "  r2-sync serve not measured: $SERVE_TODO"
    start_nginx
    # Warm the page cache once so neither server pays for the first read.
    cat "$SERVE_DIR/${SERVE_REL:-bench/serve.bin}" >/dev/null
    meta serve_runs "$SERVE_RUNS"
    meta serve_cpus "$SERVE_CPUS"
    meta client_cpus "$(client_cpus)"
    meta serve_command "BENCH_ONLY=\"$(xargs <<<"$ONLY")\" BENCH_SERVE_RUNS=$SERVE_RUNS BENCH_SERVE_CPUS=$SERVE_CPUS ./scripts/bench.sh"
    say "  nginx's config:"
    sed 's/^/    /' "$WORK/nginx.conf.txt" >&2
    for run in $(seq 1 "$SERVE_RUNS"); do
        for subject in $(rotate "$run" r2sync nginx); do
            if [ "$subject" = nginx ]; then
                serve_one nginx "$run" "$NGINX_URL"
            elif [ -n "$have_r2" ]; then
                serve_one r2sync "$run" "$R2_URL"
            fi
        done
        for subject in $(rotate "$run" r2sync nginx); do
            if [ "$subject" = nginx ]; then
                serve_ranges nginx "$run" "$NGINX_URL"
            elif [ -n "$have_r2" ]; then
                serve_ranges r2sync "$run" "$R2_URL"
            fi
        done
    done
    if [ -n "$have_r2" ] && [ -n "${BENCH_SERVE_PERF:-}" ]; then
        profile_ranges
    fi
    if [ -n "$have_r2" ]; then
        kill "$R2_SERVE_PID"
        wait "$R2_SERVE_PID" 2>/dev/null || true
    else
        meta todo.serve1.mbps "$SERVE_TODO"
        meta todo.range.rps "$SERVE_TODO"
    fi
    IDLE_TODO=
    if ! idle_rss; then
        say "  idle RSS not measured: $IDLE_TODO"
        meta todo.idle.rss_mib "$IDLE_TODO"
    fi
}

# ---------------------------------------------------------------------------------------
# Row 6: the physical limits.

bench_context() {
    say "row 6: disk read, and the S3 server's own ceiling"
    local file="$SERVE_DIR/bench/serve.bin"
    for run in $(seq 1 "$RUNS"); do
        # Drop the page cache when the kernel lets us (root outside a container); otherwise
        # the read comes from memory and the row says so.
        local cache=cached
        sync
        if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then cache="cold cache"; fi
        local t0 t1
        t0=$EPOCHREALTIME
        dd if="$file" of=/dev/null bs=4M status=none
        t1=$EPOCHREALTIME
        record dd.mbps dd "$run" "$(calc "$SERVE_BYTES / $(elapsed "$t0" "$t1") / 1e6")"
    done
    meta dd_cache "$cache"

    # The S3 server alone, curl signing with SigV4: one stream, then 4 ranged streams.
    upload "$WORK/src/big" big
    local url="$S3_URL/$BUCKET/big/f0001.bin" sig=(--aws-sigv4 "aws:amz:auto:s3"
        --user "$ACCESS_KEY:$SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
    for run in $(seq 1 "$RUNS"); do
        local out size secs
        out=$(curl -fsS "${sig[@]}" -o /dev/null -w '%{size_download} %{time_total}' "$url") ||
            die "row 6: curl could not GET the object from the S3 server"
        read -r size secs <<<"$out"
        [ "$size" -eq "$BIG_BYTES" ] || die "row 6: the S3 server sent $size of $BIG_BYTES bytes"
        record s3.mbps curl1 "$run" "$(calc "$size / $secs / 1e6")"

        local quarter=$((BIG_BYTES / 4)) pids=() i
        t0=$EPOCHREALTIME
        for i in 0 1 2 3; do
            local from=$((i * quarter)) to=$(((i + 1) * quarter - 1))
            [ "$i" -eq 3 ] && to=$((BIG_BYTES - 1))
            curl -fsS "${sig[@]}" -o /dev/null -r "$from-$to" "$url" &
            pids+=($!)
        done
        for i in "${pids[@]}"; do wait "$i" || die "row 6: a ranged curl from the S3 server failed"; done
        t1=$EPOCHREALTIME
        record s3.mbps curl4 "$run" "$(calc "$BIG_BYTES / $(elapsed "$t0" "$t1") / 1e6")"
    done
}

# ---------------------------------------------------------------------------------------
# Ledger at scale: `r2-sync run` over a ledger of N finished entries and N archived rows.

# median_of: the median of the numbers on stdin, one a line.
median_of() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ledger_rows N: N rows archived before (status 'archived', none approved), each with the
# archive path examples/ledger_scale.rs gives its ledger entry; then the index on
# archive_path the README asks the tables' owner for (its own statement), and ANALYZE.
ledger_rows() {
    local n=$1 index
    psql_q -c "INSERT INTO media (id, user_id, title, original_filename, content_type, file_size, r2_key, status,
                   storage_location, archive_path, archived_at, approved_at)
               SELECT g, 7, 'bench', format('clip %s.mp4', g), 'video/mp4', 50000000 + g,
                      format('uploads/%s/0b6e3c1e-9d7a-4f0e-8f55-%s/clip %s.mp4', g % 500, lpad(g::text, 12, '0'), g),
                      'archived', 'unraid', format('2026/%s/%s-clip %s.mp4', lpad((1 + g % 12)::text, 2, '0'), g, g),
                      now(), now()
               FROM generate_series(1, $n) g" >/dev/null
    psql_q -c "SELECT setval(pg_get_serial_sequence('media', 'id'), $n)" >/dev/null
    [ "$(psql_q -c "SELECT count(*) FROM media WHERE status = 'archived'")" -eq "$n" ] ||
        die "ledger: the scratch database does not hold $n archived rows"
    index=$(grep -m1 -o 'CREATE INDEX CONCURRENTLY.*idx_media_archive_path.*;' README.md) ||
        die "ledger: the README's CREATE INDEX ... idx_media_archive_path statement is gone"
    psql_q -c "$index" >/dev/null
    psql_q -c "ANALYZE media" >/dev/null
}

# http_ms URL COUNT [CHECK]: median milliseconds of COUNT GETs of URL, one connection each
# (curl's time_total: connect to last byte); every answer must be 200 (and contain CHECK).
http_ms() {
    local url=$1 count=$2 check=${3:-} body="$WORK/logs/http.body" out code secs
    for _ in $(seq 1 "$count"); do
        out=$(curl -s -o "$body" -w '%{http_code} %{time_total}' "$url") || die "ledger: GET $url failed"
        read -r code secs <<<"$out"
        [ "$code" = 200 ] || die "ledger: GET $url answered $code: $(head -c 300 "$body")"
        [ -z "$check" ] || grep -qF "$check" "$body" || die "ledger: GET $url lacks '$check': $(head -c 300 "$body")"
        calc "$secs * 1000"
        echo
    done | median_of
}

# ledger_at N: build, start, measure, stop.
ledger_at() {
    local n=$1
    say "ledger: $n finished entries and $n archived rows"
    reset_r2sync
    ledger_rows "$n"
    local file="$WORK/state/r2-sync.redb" built
    built=$(BUILD_ONLY=1 IN_FLIGHT=0 "$BIN/examples/ledger_scale" "$n" "$file") ||
        die "ledger: examples/ledger_scale could not build the ledger"
    say "  built: $built"
    local port hport log="$WORK/logs/ledger-run-$n.log"
    port=$(free_port)
    hport=$(free_port)
    local env=("${R2ENV[@]}" SERVER_PORT="$port" HEALTH_PORT="$hport" SYNC_INTERVAL="$LEDGER_INTERVAL" LOG_LEVEL=info)
    local health="http://127.0.0.1:$hport"
    # A start after a reboot: the ledger just written, and PostgreSQL's files, out of the page
    # cache when the kernel lets us (root outside a container), as in row 6.
    local cache=cached
    sync
    if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then cache="cold cache"; fi
    meta ledger_cache "$cache"
    local t0 t_up='' t_deep='' pid
    t0=$EPOCHREALTIME
    env -i "${env[@]}" "$BIN/r2-sync" run >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # Start-up to serving: the first 200 from /health, then from /health/deep (PostgreSQL,
    # bucket, archive, ledger), polled every 5 ms.
    local deadline=$((${EPOCHREALTIME%.*} + 30))
    while [ "${EPOCHREALTIME%.*}" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || die "ledger: r2-sync run exited: $(last_msg "$log")"
        if [ -z "$t_up" ]; then
            [ "$(curl -s -o /dev/null -w '%{http_code}' "$health/health")" = 200 ] && t_up=$EPOCHREALTIME
        fi
        if [ -n "$t_up" ]; then
            [ "$(curl -s -o /dev/null -w '%{http_code}' "$health/health/deep")" = 200 ] && t_deep=$EPOCHREALTIME && break
        fi
        sleep 0.005
    done
    [ -n "$t_deep" ] || die "ledger: r2-sync run did not answer 200 on /health and /health/deep within 30 s: $(last_msg "$log")"
    record ledger.startup_ms "$n" 1 "$(calc "($(elapsed "$t0" "$t_up")) * 1000")"
    record ledger.deep_ms "$n" 1 "$(calc "($(elapsed "$t0" "$t_deep")) * 1000")"
    # /metrics: the ledger's gauges are read on each scrape.
    local ms # (assigned first: a failure inside "$(...)" as an argument would not stop the script)
    ms=$(http_ms "$health/metrics" "$LEDGER_REQUESTS" "stage=\"done\"} $n")
    record ledger.metrics_ms "$n" 1 "$ms"
    # The status summary: GET /status, then the CLI, which finds the ledger in use and asks
    # the running process (what an operator types).
    ms=$(http_ms "$health/status" "$LEDGER_REQUESTS" "\"done\":$n")
    record ledger.status_http_ms "$n" 1 "$ms"
    local t1 t2 out="$WORK/logs/ledger-status-$n.out"
    ms=$(for _ in $(seq 1 10); do
        t1=$EPOCHREALTIME
        env -i "${env[@]}" "$BIN/r2-sync" status >"$out" 2>&1 || die "ledger: r2-sync status failed: $(cat "$out")"
        t2=$EPOCHREALTIME
        grep -q "done=$n" "$out" || die "ledger: r2-sync status does not say done=$n: $(head -n 3 "$out")"
        calc "($(elapsed "$t1" "$t2")) * 1000"
        echo
    done | median_of)
    record ledger.status_cli_ms "$n" 1 "$ms"
    # Passes with nothing to claim: run's own, one at start-up and then every LEDGER_INTERVAL;
    # their elapsed_ms from the "pass finished" log lines.
    local passes=0
    for _ in $(seq 1 600); do
        passes=$(grep -c '"msg":"pass finished"' "$log" || true)
        [ "$passes" -ge "$LEDGER_PASSES" ] && break
        kill -0 "$pid" 2>/dev/null || die "ledger: r2-sync run exited: $(last_msg "$log")"
        sleep 0.1
    done
    [ "$passes" -ge "$LEDGER_PASSES" ] || die "ledger: r2-sync run logged $passes passes, not $LEDGER_PASSES, in 60 s"
    grep '"msg":"pass finished"' "$log" | grep -vE '"claimed":0[,}]' >/dev/null &&
        die "ledger: a pass claimed rows: $(grep '"msg":"pass finished"' "$log" | head -n 1)"
    local pass_ms
    pass_ms=$(grep '"msg":"pass finished"' "$log" | sed -n 's/.*"elapsed_ms":\([0-9]*\).*/\1/p')
    ms=$(median_of <<<"$pass_ms")
    record ledger.pass_ms "$n" 1 "$ms"
    meta "ledger.passes.$n" "$(tr '\n' ' ' <<<"$pass_ms" | xargs)"
    # Memory: the peak of the whole process life (VmHWM), read before it stops.
    local hwm rss
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    record ledger.rss_mib "$n" 1 "$(calc "$hwm / 1024")"
    record ledger.rss_now_mib "$n" 1 "$(calc "$rss / 1024")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # Whatever run complained of is reported beside the figures.
    local warned
    warned=$(grep -E '"level":"(warn|error|critical)"' "$log" || true)
    if [ -n "$warned" ]; then
        say "  r2-sync run logged $(wc -l <<<"$warned") warning(s) or error(s), the first: $(head -n 1 <<<"$warned" | cut -c1-300)"
        meta "ledger.warned.$n" "$(wc -l <<<"$warned") line(s), the first: $(head -n 1 <<<"$warned" | cut -c1-300)"
    fi
    local bytes
    bytes=$(stat -c %s "$file")
    record ledger.file_mb "$n" 1 "$(calc "$bytes / 1e6")"
    record ledger.bytes_per_entry "$n" 1 "$(calc "$bytes / $n")"
    say "  $(awk -F'\t' -v n="$n" '$2 == n { printf "%s=%s ", substr($1, 8), $4 }' "$RESULTS")"
}

bench_ledger() {
    local n
    for n in $LEDGER_ENTRIES; do
        [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "BENCH_LEDGER_ENTRIES must be positive integers, not '$n'"
        ledger_at "$n"
    done
    meta ledger_entries "$LEDGER_ENTRIES"
    meta ledger_requests "$LEDGER_REQUESTS"
    meta ledger_interval "$LEDGER_INTERVAL"
    meta ledger_command "BENCH_ONLY=\"$(xargs <<<"$ONLY")\" BENCH_LEDGER_ENTRIES=\"$LEDGER_ENTRIES\" ./scripts/bench.sh"
}

# ---------------------------------------------------------------------------------------

describe_machine() {
    meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
    meta runs "$RUNS"
    if [ -n "${BENCH_R2_ENV:-}${BENCH_R2_WRAP:-}" ]; then
        meta note00 "This run set BENCH_R2_ENV='${BENCH_R2_ENV:-}' BENCH_R2_WRAP='${BENCH_R2_WRAP:-}' for every timed r2-sync pass."
    fi
    meta nproc "$(nproc)"
    meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    meta kernel "$(uname -srm)"
    meta load "$(cut -d' ' -f1-3 /proc/loadavg)"
    meta mem "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    local src fstype dev rota model
    read -r src fstype < <(findmnt -no SOURCE,FSTYPE -T "$WORK")
    dev=$(lsblk -no PKNAME "$src" 2>/dev/null | sed -n 1p || true)
    [ -z "$dev" ] && dev=$(basename "$src")
    rota=$(cat "/sys/block/$dev/queue/rotational" 2>/dev/null || echo "?")
    model=
    if [ -r "/sys/block/$dev/device/model" ]; then model=$(xargs <"/sys/block/$dev/device/model"); fi
    meta disk "$src ($fstype${model:+, $model}, $([ "$rota" = 0 ] && echo "non-rotational" || echo "rotational=$rota")), $(df -h --output=size "$WORK" | tail -n1 | xargs) — virtual disk unless a model is shown$([ -n "$LOOP" ] && echo "; the archive and rclone's destination on a fresh $(findmnt -no FSTYPE -T "$DISK") in a loop-mounted image on it (direct I/O)")"
    meta versions "$(tool_versions)"
}

notes() {
    meta note01 "Sync rows: the test S3 server (\`tests/s3-server\`, release build) on loopback, its objects in the page cache (RAM ≫ data). Timed: r2-sync's whole \`sync --once\` process (start-up, PostgreSQL claim, HEAD or a first GET that stands in for it, GET, MD5 + SHA-256, ffprobe, durable writes, rename, sidecar, record, DELETE) vs \`rclone copy bench:media/<prefix> <dir>\` alone with default settings (--transfers 4, --checkers 8, multi-thread streams 4 above 250 MiB; MD5 checked)."
    meta note02 "rclone does not fsync what it writes; r2-sync makes every 64 MiB segment, the file, the rename and the sidecar durable (one syncfs shared by the files finishing together where the filesystem honours it: ARCHIVE_SYNCFS). \`sync\` runs untimed before every timed run so earlier writeback does not land on it. Rows carry file_size, as the backend records it at upload."
    meta note03 "Objects are re-uploaded (untimed, rclone) before each r2-sync run, since r2-sync deletes what it archived; rows, leases, archive and state are reset."
    meta note04 "The ${VIDEOS:-20} videos are one ${VIDEO_BYTES:-?}-byte 720p x264 file (10 s, noise so it stays at 40 Mbit/s) under ${VIDEOS:-20} keys; r2-sync validates each with the two minimal static ffprobes its image ships, not Debian's: ffprobe-demux first (FFPROBE_DEMUX_PATH=${DEMUX_FFPROBE#"$ROOT"/}, scripts/build-ffprobe.sh --demux-only), which settles these MP4s alone, and the full minimal build where it cannot (FFPROBE_PATH=${MIN_FFPROBE#"$ROOT"/}). Throughput = bytes / wall seconds."
    meta note05 "Row 4: r2-sync is killed when \`<ARCHIVE_DIR>/.r2-sync-tmp/<id>.part\` reaches 50 %; rclone when the S3 server's GET /_stats counter reaches 50 % (its multi-thread download writes into a preallocated file, so file size says nothing). Re-downloaded = bytes the server sent over both runs − object size. 50 % of the object is a boundary of r2-sync's 64 MiB checkpoint segments, and the kill lands before that segment's checkpoint: this is r2-sync's worst case (one whole segment, plus bytes in flight)."
    meta note06 "Row 5 (when measured): nginx ($NGINX) with sendfile on (its config is in the serving section), over the same directory as \`r2-sync serve\`; wrk -t2 -c64 -d${WRK_SECS}s with bench/range.lua; r2-sync URLs carry ?token= from \`r2-sync token\`. The file is one r2-sync archived itself (so its ledger answers each request's lookup, as for every file it archives), served by both from the same path, in the page cache (warmed first). Both servers pinned to CPUs ${SERVE_CPUS} (taskset; nginx with one worker per CPU there), the client to CPUs $(client_cpus); ${SERVE_RUNS} runs of each pair, alternating."
    meta note07 "Row 6's S3-server rows are the ceiling every sync row shares: when both tools come close to it, the sync ratios measure the server more than the tools (see the S3 server CPU column)."
    meta note09 "The bucket's objects: $([[ "$S3_ROOT" == /dev/shm/* ]] && echo "in /dev/shm (tmpfs), since R2's storage is not the NAS's disk" || echo "on the archive's disk (/dev/shm had no room)"). Earlier runs' output is moved aside, never deleted, until the end: on ext4 without a journal (this machine's disk) a mass delete makes every file created in the next minute (six while the inode table is dirty) scan past the freed inodes, which charged one tool for the other's clean-up; the fresh filesystem (BENCH_FS) also keeps the work of earlier benchmarks and test runs on the disk from landing on these rows."
    meta note10 "The bash + rclone loop (rows 1 and 3, bench/bash-loop.sh): the service r2-sync replaces, which users run today. Its script is not available; it is rebuilt from the workflow of the original plan (\`Query approved → Download from R2 → Validate (ffprobe) → Move to archive → Create JSON sidecar → Update DB → Delete from R2\`) and its settings (the same DB_*, R2_*, BATCH_SIZE, ARCHIVE_DIR r2-sync reads): one psql SELECT of the approved rows, then per row, one file at a time (the plan has no concurrency setting; SYNC_CONCURRENCY is new with the rewrite): \`rclone copyto\` into a temp file on the archive's filesystem, Debian's full \`/usr/bin/ffprobe\` with r2-sync's arguments (a rejected file is left in the bucket, its row approved; row 3: VALIDATE_MEDIA=false, as for r2-sync), \`mv\` to <yyyy>/<mm>/<id>-<name>, a \`jq\` sidecar (row, size, ffprobe's output), one psql statement updating the row to archived with its media.archived audit row, \`rclone deletefile\`. Nothing fsynced. Timed as one \`bench/bash-loop.sh --once\` pass, on the same rows and re-uploaded objects as r2-sync's runs; after each pass of either, the bench checks every row archived with its audit row, file and sidecar in the archive, object gone from the bucket (bench/verify_archive.py)."
    meta note11 "CPU-s: GNU time's user + sys of the timed command and every descendant it waited for (r2-sync with its ffprobes; the bash loop with its rclone, ffprobe, psql, jq and mv processes). The S3 server's and PostgreSQL's CPU are outside it (Resources table; the bash loop's psql connects anew for each row, which costs PostgreSQL a backend each). Peak RSS: GNU time's maximum resident set size, the largest single process of the tree, not their sum. CPU-s per GB: that CPU-s over the bytes archived (rclone: copied), 10^9 bytes a GB. Row 6's ffprobe CPU ms per file: one ffprobe run per video in a bash loop (the loop's own fork cost included), Debian's /usr/bin/ffprobe and the minimal build (${MIN_FFPROBE_BUILD:-?}) alternating."
    meta note08 "Everything (S3 server, PostgreSQL, the tool measured, the client) shares the same $(nproc) cores, with other work running on the machine: absolute numbers are noisy; the ratios are the point."
}

main() {
    [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$RUNS'"
    need_tools
    if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
        say "building release binaries"
        cargo build --locked --release -p r2-sync -p r2-sync-test-s3 --bins --examples || die "the release build failed"
        if wants ledger; then
            cargo build --locked --release -p r2-sync-state --example ledger_scale || die "the release build failed"
        fi
    fi
    for b in r2-sync r2-sync-test-s3; do [ -x "$BIN/$b" ] || die "no release binary $BIN/$b"; done
    if wants ledger && [ ! -x "$BIN/examples/ledger_scale" ]; then die "no release binary $BIN/examples/ledger_scale"; fi

    WORK=$(mktemp -d "${TMPDIR:-/tmp}/r2-sync-bench.XXXXXX")
    mkdir -p "$WORK/logs"
    RESULTS="$WORK/results.tsv" META="$WORK/meta.tsv"
    : >"$RESULTS"
    : >"$META"
    mount_disk
    describe_machine
    min_ffprobe

    start_s3
    create_db
    r2_env
    reset_r2sync

    say "generating data in $WORK"
    VIDEO_BYTES=0 BIG_BYTES=$((BIG_MIB << 20)) SERVE_BYTES=$((SERVE_MIB << 20))
    if wants videos; then make_videos; fi
    if wants big || wants resume || wants context; then make_big; fi
    if wants small; then make_small; fi
    if wants serve || wants context; then make_serve_file; fi
    meta videos "$VIDEOS"
    meta video_bytes "$VIDEO_BYTES"
    meta big_bytes "$BIG_BYTES"
    meta small_files "$SMALL_FILES"
    meta small_bytes "$SMALL_BYTES"
    meta serve_bytes "$SERVE_BYTES"

    if wants videos; then bench_videos; fi
    if wants big; then bench_big; fi
    if wants small; then bench_small; bench_small_floor; fi
    if wants resume; then bench_resume; fi
    if wants serve; then bench_serve; fi
    if wants context; then bench_context; fi
    if wants ledger; then bench_ledger; fi
    notes

    say "writing $OUT"
    echo
    local only=()
    case "$(xargs <<<"$ONLY")" in
        ledger) only=(--only-ledger) ;;
        serve) only=(--only-serve) ;;
    esac
    python3 bench/report.py "${only[@]}" "$RESULTS" "$META" "$OUT"
}

main "$@"
