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

# The power-cut tests (tests/powercut.rs) mount a FUSE file system: /dev/fuse must exist (the
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

# Tests of what a real install meets (tests/grants.rs) log in over TCP as members of the group
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
