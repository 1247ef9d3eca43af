# Shared set-up steps for scripts/*.sh (sourced, not run).

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_ffmpeg() {
    command -v ffprobe >/dev/null && command -v ffmpeg >/dev/null || apt_install ffmpeg
}

need_curl() {
    command -v curl >/dev/null || apt_install curl ca-certificates
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
        pg_isready -q -h 127.0.0.1 -p 5432 && return 0
        sleep 1
    done
    echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
    return 1
}
