# Shared set-up steps for scripts/*.sh (sourced, not run).

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_ffmpeg() {
    command -v ffprobe >/dev/null && command -v ffmpeg >/dev/null || apt_install ffmpeg
}

# The dashboard's browser test (tests/it/dashboard.rs) drives headless Chromium through
# its WebDriver (chromedriver).
need_chromium() {
    command -v chromium >/dev/null && command -v chromedriver >/dev/null || apt_install chromium chromium-driver
}

# The alert rules' checks and unit tests (tests/it/alerts.rs) run promtool.
need_promtool() {
    command -v promtool >/dev/null || apt_install prometheus
}

# The minimal ffprobe the image ships (scripts/build-ffprobe.sh: Debian's ffmpeg source, a few
# minutes the first time on 2 cores, then cached under target/ffprobe). The corpus test
# (tests/it/probe_corpus.rs) holds it to Debian's full ffprobe; built here, before the tests
# run, so no test waits for it.
need_min_ffprobe() {
    ./scripts/build-ffprobe.sh >/dev/null
    ./scripts/build-ffprobe.sh --demux-only >/dev/null
}

need_curl() {
    command -v curl >/dev/null || apt_install curl ca-certificates
}

# The power-cut tests (tests/it/powercut.rs) mount a FUSE file system: /dev/fuse must exist (the
# kernel's; a container needs --device /dev/fuse --cap-add SYS_ADMIN). As root they mount
# directly; anyone else needs fusermount3, from fuse3.
need_fuse() {
    if [ ! -e /dev/fuse ]; then
        echo "/dev/fuse is missing: the power-cut tests need FUSE (modprobe fuse; in a container, --device /dev/fuse --cap-add SYS_ADMIN)" >&2
        return 1
    fi
    command -v fusermount3 >/dev/null || apt_install fuse3
}

need_nextest() {
    cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
}

# PostgreSQL on 127.0.0.1:5432 with trust auth (the machine's own cluster).
need_postgres() {
    if ! command -v pg_ctlcluster >/dev/null; then apt_install postgresql; fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    fi
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && { need_password_auth; return; }
        sleep 1
    done
    echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
    return 1
}

# Tests of what a real install meets (tests/it/grants.rs) log in over TCP as members of the group
# r2sync_password_auth, which must give a password; everyone else keeps the cluster's trust.
# pg_hba.conf takes the first matching line, so this one goes first.
need_password_auth() {
    local line="host all +r2sync_password_auth 127.0.0.1/32 scram-sha-256"
    local hba
    hba="/etc/postgresql/$(ls /etc/postgresql | head -n1)/main/pg_hba.conf"
    psql -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -c \
        "DO \$\$ BEGIN CREATE ROLE r2sync_password_auth NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$"
    if ! grep -qxF "$line" "$hba"; then
        sed -i "1i $line" "$hba"
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "SELECT pg_reload_conf()" >/dev/null
    fi
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The test S3 server (tests/s3-server) in the background, serving DIR (its buckets are DIR's
# folders), with the keys S3_ACCESS_KEY / S3_SECRET_KEY. Sets S3 (its URL) and S3_PID.
S3_ACCESS_KEY=demo-access
S3_SECRET_KEY=demo-secret-key
start_test_s3() {
    local bin=$1 dir=$2
    "$bin" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$dir" >"$dir.out" &
    S3_PID=$!
    for _ in $(seq 1 100); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.05; done
    S3="http://$(sed -n 's/^listening on //p' "$dir.out")"
}

# PUT FILE into the test S3 server ($S3) as BUCKET/KEY (second argument).
s3_upload() {
    curl -sS --fail --aws-sigv4 "aws:amz:auto:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -H "Content-Type: video/mp4" \
        -T "$1" "$S3/$2" >/dev/null
}

# A small real video: gen_video OUT SECONDS TONE_HZ (MPEG-4 video and AAC audio).
gen_video() {
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc=duration=$2:size=320x240:rate=25" \
        -f lavfi -i "sine=frequency=$3:duration=$2" -c:v mpeg4 -q:v 4 -c:a aac -shortest "$1"
}

# A scratch database DB with the backend's tables (schema/backend.sql), owned by postgres.
create_scratch_db() {
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $1" >/dev/null
    psql -h 127.0.0.1 -U postgres -d "$1" -q -v ON_ERROR_STOP=1 -f schema/backend.sql >/dev/null
}

drop_scratch_db() {
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true
}

# An approved media row for an object already uploaded: insert_approved DB KEY FILE TITLE.
# Prints the row's id.
insert_approved() {
    psql -h 127.0.0.1 -U postgres -d "$1" -tAq -v ON_ERROR_STOP=1 -c \
        "INSERT INTO media (user_id, title, original_filename, content_type, file_size, r2_key, status, approved_at)
         VALUES (7, '$4', '$(basename "$3")', 'video/mp4', $(stat -c %s "$3"), '$2', 'approved', now())
         RETURNING id"
}
