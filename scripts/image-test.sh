#!/usr/bin/env bash
# End-to-end test of the container image on a fresh Debian machine, as root: builds the
# unmodified Dockerfile with podman and runs the image against the test rig on the host (a
# scratch PostgreSQL database reached by a password-auth role holding exactly the README's
# grants, the test S3 server holding a generated video), as PUID/PGID 4242:4343 with UMASK 002.
#
# No image registry is needed: the Dockerfile's base images are made here, once, and kept
# (debian:bookworm-slim from a debootstrap of bookworm; rust:1-slim-bookworm from it plus the
# host's Rust toolchain, gcc, libc6-dev and the host's local certificate authorities). The build fetches crates from crates.io.
# The image it builds stays as r2-sync:image-test; everything else it made is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

IMAGE=r2-sync:image-test
BASE_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:1-slim-bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PUID=4242 PGID=4343 UMASK=002
# runc: crun refuses this machine's cgroup set-up. Raising ulimits fails here, so they are
# pinned to what the machine already allows.
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

say() { echo "==> $*"; }
indent() { sed 's/^/    /'; }
fail() {
    echo "image-test: FAIL: $*" >&2
    exit 1
}

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    apt_install podman runc debootstrap
fi
need_ffmpeg
need_min_ffprobe
need_curl
need_postgres

WORK=$(mktemp -d /tmp/r2-sync-image-test.XXXXXX)
NAME="r2sync_image_test_$$"
CONTAINER="r2-sync-image-test-$$"
S3_PID=
cleanup() {
    local code=$?
    if [ "$code" != 0 ] && "${PODMAN[@]}" container exists "$CONTAINER" 2>/dev/null; then
        echo "--- the container's log (last 40 lines) ---" >&2
        "${PODMAN[@]}" logs --tail 40 "$CONTAINER" >&2 || true
        echo "--- podman's messages ---" >&2
        cat "$WORK/podman.err" >&2 2>/dev/null || true
    fi
    "${PODMAN[@]}" rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
    if [ -n "$S3_PID" ]; then kill "$S3_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    drop_scratch_db "$NAME"
    psql -h 127.0.0.1 -U postgres -qc "DROP ROLE IF EXISTS $NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    echo "==> image-test cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the base images ------------------------------------------------------------------
# The base is made as Debian's official debian:bookworm-slim is (debuerreotype: a minbase
# debootstrap, its "minimizing config", then "slimify"): no documentation, manual pages or
# translations, now or from later installs (dpkg path-exclude), and no package cache. A plain
# debootstrap is twice its size, and the image's size (reported below) would measure the base
# rather than what the Dockerfile adds. BASE_RECIPE is bumped when these steps change, so a
# machine that keeps an older base makes it again.
BASE_RECIPE=2
if [ "$(podman image inspect --format '{{.Comment}}' "$BASE_IMAGE" 2>/dev/null)" != "r2-sync base $BASE_RECIPE" ]; then
    say "making $BASE_IMAGE (debootstrap --variant=minbase bookworm, slimmed as Debian's -slim)"
    root="$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" ||
        { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
    printf '%s\n' "deb $DEBIAN_MIRROR bookworm main" "deb $DEBIAN_MIRROR bookworm-updates main" \
        "deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main" >"$root/etc/apt/sources.list"
    slim=(/usr/share/doc/ /usr/share/groff/ /usr/share/info/ /usr/share/linda/ /usr/share/lintian/overrides/
        /usr/share/locale/ /usr/share/man/)
    {
        for dir in "${slim[@]}"; do echo "path-exclude=$dir*"; done
        echo "path-include=/usr/share/doc/*/copyright"
        echo "path-include=/usr/share/locale/locale.alias"
    } >"$root/etc/dpkg/dpkg.cfg.d/docker"
    for dir in "${slim[@]}"; do
        find "$root$dir" -mindepth 1 \( -type f -o -type l \) ! -path "$root/usr/share/doc/*/copyright" \
            ! -path "$root/usr/share/locale/locale.alias" -delete 2>/dev/null || true
        find "$root$dir" -mindepth 1 -depth -type d -empty -delete 2>/dev/null || true
    done
    # apt keeps no package cache in the image (what "apt-get clean" after every install does).
    printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$root/etc/apt/apt.conf.d/docker-clean"
    printf '%s\n' 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap
    tar -C "$root" -c . | podman import -q --change 'CMD ["bash"]' \
        --message "r2-sync base $BASE_RECIPE" - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    # The Rust image is made from the base: a new base makes it again too.
    podman rmi -f "$RUST_IMAGE" >/dev/null 2>&1 || true
fi
if ! podman image exists "$RUST_IMAGE"; then
    say "making $RUST_IMAGE ($BASE_IMAGE, the host's Rust toolchain, gcc, libc6-dev)"
    sysroot=$(rustc --print sysroot)
    toolchain=$(basename "$sysroot")
    ctx="$WORK/rust-image"
    mkdir -p "$ctx/rustup/toolchains/$toolchain" "$ctx/cargo/bin"
    # The toolchain without its documentation (share/doc: most of its size).
    tar -C "$sysroot" -c --exclude=./share/doc . | tar -C "$ctx/rustup/toolchains/$toolchain" -x
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$toolchain" \
        >"$ctx/rustup/settings.toml"
    cp "$(command -v rustup)" "$ctx/cargo/bin/rustup"
    for tool in cargo rustc rustdoc; do ln -s rustup "$ctx/cargo/bin/$tool"; done
    # The machine's own certificate authorities (a TLS-inspecting proxy's, when crates.io is
    # reached through one), so cargo in the build stage trusts what the host trusts.
    mkdir -p "$ctx/ca"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
    # As the official image sets them.
    cat >"$ctx/Containerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY ca /usr/local/share/ca-certificates
RUN update-ca-certificates >/dev/null 2>&1
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
EOF
    "${PODMAN[@]}" build --pull=never --network=host "${ULIMITS[@]}" -q -t "$RUST_IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
fi

# --- the image --------------------------------------------------------------------------
say "building $IMAGE from the Dockerfile"
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
start=$(date +%s)
"${PODMAN[@]}" build --pull=never --format docker --network=host "${ULIMITS[@]}" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; fail "podman build"; }
BUILD_SECONDS=$(($(date +%s) - start))
# Layers are reused while what they copy is unchanged (a second run builds in seconds).
BUILD_NOTE="$(grep -c 'Using cache' "$WORK/build.log" || true) of $(grep -c '\] STEP ' "$WORK/build.log" || true) steps from podman's layer cache"
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
# The previous build's image, now untagged, would only take space.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
IMAGE_SIZE=$(podman image ls --format '{{.Size}}' "$IMAGE" | head -n1)
health_cmd=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
case "$health_cmd" in *'r2-sync","healthcheck"]'*) ;; *) fail "the image keeps no HEALTHCHECK running r2-sync healthcheck: $health_cmd" ;; esac
say "built in ${BUILD_SECONDS} s ($BUILD_NOTE), $IMAGE_SIZE"
# The image's ffprobes are the builds the corpus test (tests/it/probe_corpus.rs) judged on the
# host: the same Debian source version and configuration.
version_and_configuration() { sed -n '1s/ Copyright.*//p; /^configuration:/p'; }
PROBE_NOTE=
for probe in ffprobe ffprobe-demux; do
    in_image=$("${PODMAN[@]}" run --rm "${ULIMITS[@]}" --entrypoint "/usr/local/bin/$probe" "$IMAGE" -version |
        version_and_configuration)
    flags=()
    [ "$probe" = ffprobe ] || flags=(--demux-only)
    on_host=$("$(./scripts/build-ffprobe.sh "${flags[@]}" | tail -n1)" -version | version_and_configuration)
    [ "$in_image" = "$on_host" ] || fail "the image's $probe differs from scripts/build-ffprobe.sh ${flags[*]}'s on the host:
$in_image
$on_host"
    bytes=$("${PODMAN[@]}" run --rm "${ULIMITS[@]}" --entrypoint stat "$IMAGE" -c %s "/usr/local/bin/$probe")
    PROBE_NOTE+="${PROBE_NOTE:+; }$probe $bytes bytes"
done
PROBE_NOTE="$(head -n1 <<<"$in_image"), static: $PROBE_NOTE"
say "ffprobe: $PROBE_NOTE, the host's builds"

# --- the rig ------------------------------------------------------------------------------
say "starting the test S3 server, a scratch database and a password-auth role"
cargo build --locked -q -p r2-sync-test-s3
mkdir -p "$WORK/s3/media" "$WORK/media" "$WORK/config" "$WORK/src"
start_test_s3 "${CARGO_TARGET_DIR:-target}/debug/r2-sync-test-s3" "$WORK/s3"
[ "$S3" != "http://" ] || fail "the test S3 server did not start: $(cat "$WORK/s3.out")"
create_scratch_db "$NAME"
PASSWORD="pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
psql -h 127.0.0.1 -U postgres -qc \
    "CREATE ROLE $NAME LOGIN PASSWORD '$PASSWORD' IN ROLE r2sync_password_auth" >/dev/null
# Exactly the README's grants (as tests/it/grants.rs reads them), for this role.
grep -E '^ *GRANT .* TO r2sync;$' README.md | sed "s/^ *//; s/ TO r2sync;\$/ TO $NAME;/" >"$WORK/grants.sql"
[ -s "$WORK/grants.sql" ] || fail "README.md lists no GRANT ... TO r2sync;"
psql -h 127.0.0.1 -U postgres -d "$NAME" -q -v ON_ERROR_STOP=1 -f "$WORK/grants.sql" >/dev/null
if psql -h 127.0.0.1 -U "$NAME" -d "$NAME" -w -tAc 'SELECT 1' >/dev/null 2>&1; then
    fail "role $NAME logged in without its password: pg_hba.conf lacks need_password_auth's line"
fi

gen_video "$WORK/src/clip one.mp4" 3 440
KEY="uploads/user7/clip_one.mp4"
s3_upload "$WORK/src/clip one.mp4" "media/$KEY"
ID=$(insert_approved "$NAME" "$KEY" "$WORK/src/clip one.mp4" "Image test")

# --- the container --------------------------------------------------------------------------
SERVER_PORT=$(free_port)
HEALTH_PORT=$(free_port)
say "running $IMAGE as $PUID:$PGID (UMASK $UMASK), file server :$SERVER_PORT, health :$HEALTH_PORT"
start=$(date +%s)
"${PODMAN[@]}" run -d --name "$CONTAINER" --network=host "${ULIMITS[@]}" --stop-timeout=40 \
    -v "$WORK/media:/media" -v "$WORK/config:/config" \
    -e PUID=$PUID -e PGID=$PGID -e UMASK=$UMASK \
    -e DB_HOST=127.0.0.1 -e DB_PORT=5432 -e DB_NAME="$NAME" -e DB_USER="$NAME" \
    -e DB_PASSWORD="$PASSWORD" -e DB_SSLMODE=disable \
    -e R2_ENDPOINT="$S3" -e R2_ACCESS_KEY="$S3_ACCESS_KEY" -e R2_SECRET_KEY="$S3_SECRET_KEY" \
    -e R2_BUCKET=media -e SYNC_INTERVAL=10s \
    -e UNRAID_TUNNEL_SECRET="image-test-only-secret-image-test-only-0123456789" \
    -e SERVER_PORT="$SERVER_PORT" -e HEALTH_PORT="$HEALTH_PORT" \
    "$IMAGE" >/dev/null 2>>"$WORK/podman.err" || fail "podman run: $(cat "$WORK/podman.err")"

# HEALTHCHECK: podman runs it on a systemd timer (it says so on stderr when systemd is absent,
# as here), so it is run here as that timer would.
healthy=
for _ in $(seq 1 60); do
    if "${PODMAN[@]}" healthcheck run "$CONTAINER" >/dev/null 2>&1; then healthy=yes; break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] || fail "the container exited"
    sleep 1
done
HEALTHY_SECONDS=$(($(date +%s) - start))
state=$(podman inspect --format '{{.State.Health.Status}}' "$CONTAINER")
if [ -z "$healthy" ] || [ "$state" != healthy ]; then
    fail "HEALTHCHECK: not healthy after 60 s (status: $state)"
fi
say "healthy after ${HEALTHY_SECONDS} s"

in_container() { "${PODMAN[@]}" exec -u r2sync "$CONTAINER" "$@"; }
procs=$("${PODMAN[@]}" top "$CONTAINER" huser hgroup args)
echo "$procs" | grep -qE "^$PUID +$PGID +r2-sync run" || fail "r2-sync does not run as $PUID:$PGID:
$procs"
say "r2-sync check (as r2sync, $(in_container id -u):$(in_container id -g))"
check_out=$(in_container r2-sync check) || fail "r2-sync check:
$check_out"
indent <<<"$check_out"
oks=$(grep -c '^ok ' <<<"$check_out" || true)
! grep -q '^FAIL' <<<"$check_out" || fail "r2-sync check printed a FAIL line"

say "waiting for a pass to archive media $ID"
status=
for _ in $(seq 1 90); do
    status=$(psql -h 127.0.0.1 -U postgres -d "$NAME" -tAc "SELECT status FROM media WHERE id = $ID")
    [ "$status" = archived ] && break
    sleep 1
done
[ "$status" = archived ] || fail "media $ID is '$status' in PostgreSQL after 90 s"
ARCHIVE_PATH=$(psql -h 127.0.0.1 -U postgres -d "$NAME" -tAc "SELECT archive_path FROM media WHERE id = $ID")
file="$WORK/media/archive/$ARCHIVE_PATH"
if [ ! -f "$file" ] || [ ! -f "$file.json" ]; then
    fail "no $ARCHIVE_PATH (and sidecar) under the host's media dir:
$(find "$WORK/media" -ls)"
fi
cmp -s "$file" "$WORK/src/clip one.mp4" || fail "the archived file differs from the upload"
for f in "$file" "$file.json" "$(dirname "$file")"; do
    owner=$(stat -c %u:%g "$f")
    [ "$owner" = "$PUID:$PGID" ] || fail "$f is owned by $owner, not $PUID:$PGID"
    mode=$(stat -c %a "$f")
    # UMASK 002 leaves the group's write bit and takes the others'.
    [ $((0$mode & 0022)) = $((0020)) ] || fail "$f has mode $mode: UMASK $UMASK not applied"
done
[ ! -e "$WORK/s3/media/$KEY" ] || fail "the object $KEY is still in the test S3 server"
say "archived $ARCHIVE_PATH: $(stat -c '%u:%g %a' "$file"), sidecar $(stat -c '%u:%g %a' "$file.json"); row archived; object deleted"

say "r2-sync status"
status_out=$(in_container r2-sync status) || fail "r2-sync status: $status_out"
indent <<<"$status_out"
grep -qE "^1 entries: .*(done|recorded)=1" <<<"$status_out" || fail "r2-sync status does not count media $ID as done"
status_out=$(in_container r2-sync status --media-id "$ID") || fail "r2-sync status --media-id $ID: $status_out"
indent <<<"$status_out"
grep -qE "^ +$ID +(done|recorded) " <<<"$status_out" || fail "r2-sync status does not list media $ID as done"

say "a signed link from r2-sync token, fetched with a Range"
link=$(in_container r2-sync token --media-id "$ID" --user-id 7 --ttl 1h \
    --base-url "http://127.0.0.1:$SERVER_PORT") || fail "r2-sync token: $link"
code=$(curl -s -r 100-1099 -o "$WORK/range" -w '%{http_code}' "$link")
[ "$code" = 206 ] || fail "GET with Range: $code (expected 206) for $link"
cmp -s "$WORK/range" <(tail -c +101 "$file" | head -c 1000) || fail "the 206 body is not bytes 100-1099 of the file"
forged=$(curl -s -o /dev/null -w '%{http_code}' "${link%%\?*}?token=forged")
[ "$forged" = 401 ] || fail "a forged token got $forged (expected 401)"
say "206 with bytes 100-1099; a forged token gets $forged"

say "podman stop (SIGTERM)"
start=$(date +%s)
[ "$(podman inspect --format '{{.Config.StopTimeout}}' "$CONTAINER")" = 40 ] ||
    fail "the container's stop timeout is not the template's --stop-timeout=40"
"${PODMAN[@]}" stop "$CONTAINER" >/dev/null 2>>"$WORK/podman.err"
STOP_SECONDS=$(($(date +%s) - start))
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[ "$exit_code" = 0 ] || fail "the container exited $exit_code after SIGTERM (in ${STOP_SECONDS} s)"
[ "$STOP_SECONDS" -lt 40 ] || fail "the stop took ${STOP_SECONDS} s, the stop timeout is 40 s"

echo
echo "image-test: passed"
echo "    build            ${BUILD_SECONDS} s ($BUILD_NOTE)"
echo "    image size       $IMAGE_SIZE ($IMAGE)"
echo "    ffprobe          $PROBE_NOTE"
echo "    healthy after    ${HEALTHY_SECONDS} s"
echo "    check            $oks lines ok, 0 FAIL (as $PUID:$PGID)"
echo "    sync pass        media $ID archived as $PUID:$PGID, mode $(stat -c %a "$file")"
echo "    stop (SIGTERM)   ${STOP_SECONDS} s, exit code 0"
