#!/bin/sh
# r2-sync container entrypoint (PID 1 is tini, which runs this script).
#
# Started as root (the default), it runs r2-sync as PUID:PGID the way linuxserver.io and
# Unraid images do:
#   - moves the r2sync user/group to PUID (default 99) and PGID (default 100);
#   - gives /config (and STATE_DIR) to that user, recursively: the state is small;
#   - creates ARCHIVE_DIR and SHADOW_DIR inside an existing parent when missing, and gives
#     them to that user, NOT recursively:
#     the media share may hold terabytes and keeps its owners;
#   - applies UMASK (default 022) and execs r2-sync as that user.
# Started as any other user (docker run --user), it applies UMASK and execs r2-sync.
set -eu

PUID="${PUID:-99}"
PGID="${PGID:-100}"
UMASK="${UMASK:-022}"
APP_USER=r2sync

die() {
    echo "docker-entrypoint: $*" >&2
    exit 1
}

case "$PUID" in '' | *[!0-9]*) die "PUID must be a number, got '$PUID'" ;; esac
case "$PGID" in '' | *[!0-9]*) die "PGID must be a number, got '$PGID'" ;; esac
case "$UMASK" in
    [0-7][0-7][0-7] | [0-7][0-7][0-7][0-7]) ;;
    *) die "UMASK must be an octal mask such as 022 or 0002, got '$UMASK'" ;;
esac

umask "$UMASK"

if [ "$(id -u)" != 0 ]; then
    exec r2-sync "$@"
fi

if [ "$PUID" = 0 ]; then
    echo "docker-entrypoint: PUID=0: running r2-sync as root (not recommended)" >&2
    exec r2-sync "$@"
fi

# The group: reuse whichever group already has PGID (100 is "users"), else move or
# create our own.
group="$(getent group "$PGID" | cut -d: -f1)" || true
if [ -z "$group" ]; then
    if getent group "$APP_USER" >/dev/null; then
        groupmod -o -g "$PGID" "$APP_USER"
    else
        groupadd -o -g "$PGID" "$APP_USER"
    fi
    group="$APP_USER"
fi

# The user (created in the image; recreated if someone removed it).
if ! getent passwd "$APP_USER" >/dev/null; then
    useradd -o -u "$PUID" -g "$group" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$APP_USER"
fi
if [ "$(id -u "$APP_USER")" != "$PUID" ]; then
    usermod -o -u "$PUID" "$APP_USER"
fi
if [ "$(id -g "$APP_USER")" != "$PGID" ]; then
    usermod -g "$group" "$APP_USER"
fi

# Ownership. Only files not already owned are touched, so restarts stay cheap. A chown
# that fails (a read-only or root-squashed share) is reported, not fatal: r2-sync's own
# start-up check says clearly what it cannot write.
own_tree() {
    mkdir -p "$1" 2>/dev/null || true
    find "$1" \( ! -user "$PUID" -o ! -group "$PGID" \) -exec chown -h "$PUID:$PGID" {} + ||
        echo "docker-entrypoint: warning: could not give $1 to $PUID:$PGID" >&2
}
# A missing archive directory is made inside a share that is mapped (its parent exists), so
# a fresh install's first pass works; never its parent, which would put the archive inside
# the container.
own_dir() {
    if [ ! -d "$1" ] && [ -d "$(dirname "$1")" ]; then
        mkdir "$1" 2>/dev/null ||
            echo "docker-entrypoint: warning: could not create $1" >&2
    fi
    if [ -d "$1" ]; then
        chown "$PUID:$PGID" "$1" ||
            echo "docker-entrypoint: warning: could not give $1 to $PUID:$PGID" >&2
    fi
}

own_tree /config
STATE_DIR="${STATE_DIR:-/config}"
if [ "$STATE_DIR" != /config ]; then
    own_tree "$STATE_DIR"
fi
own_dir "${ARCHIVE_DIR:-/media/archive}"
if [ -n "${SHADOW_DIR:-}" ]; then
    own_dir "$SHADOW_DIR"
fi

exec gosu "$APP_USER" r2-sync "$@"
