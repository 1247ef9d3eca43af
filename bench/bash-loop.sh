#!/usr/bin/env bash
# The bash + rclone service r2-sync replaces, rebuilt for the benchmark (make bench, issue
# 15) as the baseline users run today. Not r2-sync's code and not used by it.
#
# Written from the workflow in the original plan (shared/original-plan.md, "2. Sync
# Workflow (same as bash)"):
#
#   Query approved -> Download from R2 -> Validate (ffprobe) -> Move to archive ->
#   Create JSON sidecar -> Update DB -> Delete from R2
#
# and from its environment (the plan's Config, "same vars as bash"; docs/contract.md section 4):
# DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD (alias DB_PASS), R2_ENDPOINT, R2_ACCESS_KEY,
# R2_SECRET_KEY, R2_BUCKET, BATCH_SIZE (10), SYNC_INTERVAL (30m), ARCHIVE_DIR (/media/archive).
# The bash service's own script (sync-service/scripts/r2-sync.sh in the plan) is not available.
# The plan says it depended on rclone ("Depends on rclone") and validated with ffprobe; the
# other steps use the plain shell tool for each (psql, mv, jq), as issue 15 lays them out. Per
# row:
#
#   psql SELECT          the rows with status 'approved' and deleted_at null, oldest approval
#                        first, BATCH_SIZE of them (docs/contract.md section 1)
#   rclone copyto        the object to a temp file under ARCHIVE_DIR/.bash-loop-tmp (the
#                        archive's filesystem, so the move below is a rename)
#   ffprobe              Debian's full /usr/bin/ffprobe, a distribution's ffmpeg package as the
#                        bash service ran (issue 15; the plan gives no version), with r2-sync's
#                        arguments; a file it rejects is left as the old service left it (issue
#                        15; the plan does not say): temp file removed, row still approved,
#                        object still in the bucket, so it is tried again next pass
#   mv                   to ARCHIVE_DIR/<yyyy>/<mm>/<id>-<name> (r2-sync's layout)
#   jq                   the sidecar <file>.json: the row's fields, the size and ffprobe's output
#   psql UPDATE+INSERT   the row to archived (storage_location unraid, archive_path, archived_at)
#                        and its media.archived audit row, in one statement
#   rclone deletefile    the object
#
# One file at a time, as the bash service did: the plan's Config has no concurrency setting,
# and docs/contract.md (section 4) lists SYNC_CONCURRENCY among the settings new with the
# rewrite. Nothing is fsynced (mv, jq and rclone do not), unlike r2-sync.
#
# Beyond the plan, for the benchmark: VALIDATE_MEDIA=false skips ffprobe (row 3's objects are
# not media, and r2-sync runs with the same setting there); FFPROBE names another ffprobe;
# RCLONE_REMOTE names an rclone remote to use instead of the one built from R2_*.
#
#   bench/bash-loop.sh [--once]      one pass (--once), or a pass every SYNC_INTERVAL
#
# Exits non-zero when a --once pass had an error (a download, move, sidecar, update or delete
# that failed); a file ffprobe rejects is not an error, as it was not for the old service.
set -uo pipefail

: "${DB_HOST:?}" "${DB_NAME:?}" "${DB_USER:?}" "${R2_BUCKET:?}"
BATCH_SIZE=${BATCH_SIZE:-10}
SYNC_INTERVAL=${SYNC_INTERVAL:-30m}
ARCHIVE_DIR=${ARCHIVE_DIR:-/media/archive}
VALIDATE_MEDIA=${VALIDATE_MEDIA:-true}
FFPROBE=${FFPROBE:-/usr/bin/ffprobe}
export PGHOST=$DB_HOST PGPORT=${DB_PORT:-5432} PGDATABASE=$DB_NAME PGUSER=$DB_USER
if [ -n "${DB_PASSWORD:-${DB_PASS:-}}" ]; then export PGPASSWORD=${DB_PASSWORD:-$DB_PASS}; fi

# rclone's remote `r2:` from the environment (no config file entry needed).
REMOTE=${RCLONE_REMOTE:-r2}
if [ -z "${RCLONE_REMOTE:-}" ]; then
    : "${R2_ENDPOINT:?}" "${R2_ACCESS_KEY:?}" "${R2_SECRET_KEY:?}"
    export RCLONE_CONFIG_R2_TYPE=s3 RCLONE_CONFIG_R2_PROVIDER=Cloudflare
    export RCLONE_CONFIG_R2_ENDPOINT=$R2_ENDPOINT RCLONE_CONFIG_R2_REGION=auto
    export RCLONE_CONFIG_R2_FORCE_PATH_STYLE=true RCLONE_CONFIG_R2_NO_CHECK_BUCKET=true
    export RCLONE_CONFIG_R2_ACCESS_KEY_ID=$R2_ACCESS_KEY RCLONE_CONFIG_R2_SECRET_ACCESS_KEY=$R2_SECRET_KEY
fi

TMP_DIR=$ARCHIVE_DIR/.bash-loop-tmp

log() { printf '%(%Y-%m-%dT%H:%M:%S)T bash-loop: %s\n' -1 "$*" >&2; }
psql_q() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

# archive_one ID ROW_JSON: the steps above for one row. Returns 0 when archived, 2 when ffprobe
# rejected the file (left as it is), 1 on an error.
archive_one() {
    local id=$1 row=$2 key name fields
    # One jq call for the fields the shell needs, quoted for eval by jq's @sh.
    fields=$(jq -r '@sh "key=\(.r2_key) name=\(.original_filename)"' <<<"$row") || return 1
    eval "$fields"
    local tmp=$TMP_DIR/$id.part probe=$TMP_DIR/$id.probe.json
    if ! rclone copyto "$REMOTE:$R2_BUCKET/$key" "$tmp"; then
        log "media $id: download of '$key' failed"
        rm -f "$tmp"
        return 1
    fi
    if [ "$VALIDATE_MEDIA" = false ]; then
        echo null >"$probe"
    elif ! "$FFPROBE" -v error -print_format json -show_format -show_streams -- "$tmp" >"$probe"; then
        log "media $id: ffprobe rejected '$key'; left in the bucket, the row approved"
        rm -f "$tmp" "$probe"
        return 2
    fi
    # <yyyy>/<mm>/<id>-<name>, the name reduced to safe characters.
    local safe=${name//[^A-Za-z0-9._-]/_}
    if [ -z "$safe" ] || [ "${safe:0:1}" = . ]; then safe="_$safe"; fi
    local rel dest size
    rel=$(printf '%(%Y/%m)T' -1)/$id-$safe
    dest=$ARCHIVE_DIR/$rel
    size=$(stat -c %s "$tmp")
    if ! mkdir -p "${dest%/*}" || ! mv -- "$tmp" "$dest"; then
        log "media $id: could not move the file into $dest"
        return 1
    fi
    if ! jq -n --argjson row "$row" --slurpfile probe "$probe" --argjson size "$size" \
        --arg archived_at "$(printf '%(%Y-%m-%dT%H:%M:%S%z)T' -1)" \
        '{media_id: $row.id, user_id: $row.user_id, title: $row.title, description: $row.description,
          original_filename: $row.original_filename, content_type: $row.content_type, size: $size,
          r2_key: $row.r2_key, approved_at: $row.approved_at, archived_at: $archived_at,
          ffprobe: $probe[0]}' >"$dest.json"; then
        log "media $id: the sidecar $dest.json could not be written"
        return 1
    fi
    rm -f "$probe"
    # The update only moves a row still approved; the audit row comes with it, or not at all.
    local moved
    moved=$(psql_q -v id="$id" -v path="$rel" -v size="$size" <<'SQL'
WITH moved AS (
    UPDATE media SET status = 'archived', storage_location = 'unraid', archive_path = :'path',
                     archived_at = now(), updated_at = now()
    WHERE id = :id AND status = 'approved' AND deleted_at IS NULL
    RETURNING id
)
INSERT INTO audit_logs (user_id, action, entity_type, entity_id, details)
SELECT NULL, 'media.archived', 'media', id, jsonb_build_object('archive_path', :'path', 'size', :size::bigint)
FROM moved RETURNING entity_id;
SQL
    ) || {
        log "media $id: the database update failed"
        return 1
    }
    if [ "$moved" != "$id" ]; then
        log "media $id: no longer approved; the object is kept"
        return 0
    fi
    if ! rclone deletefile "$REMOTE:$R2_BUCKET/$key"; then
        log "media $id: archived, but deleting '$key' from the bucket failed"
        return 1
    fi
    return 0
}

# One pass: BATCH_SIZE approved rows, one after the other. Sets ERRORS.
sync_pass() {
    local archived=0 rejected=0 id row rc
    ERRORS=0
    mkdir -p "$TMP_DIR" || return 1
    # One line per row: the id, a tab, the row as JSON (JSON escapes tabs and newlines).
    local rows
    rows=$(psql_q -F $'\t' -v batch="$BATCH_SIZE" <<'SQL'
SELECT id, json_build_object('id', id, 'user_id', user_id, 'title', title, 'description', description,
           'original_filename', original_filename, 'content_type', content_type, 'r2_key', r2_key,
           'approved_at', approved_at)
FROM media WHERE status = 'approved' AND deleted_at IS NULL
ORDER BY approved_at, id LIMIT :batch;
SQL
    ) || {
        log "the query for approved rows failed"
        ERRORS=1
        return
    }
    # (on fd 3: the tools below never read the list from their stdin)
    while IFS=$'\t' read -r -u 3 id row; do
        [ -n "$id" ] || continue
        archive_one "$id" "$row"
        rc=$?
        case $rc in
        0) archived=$((archived + 1)) ;;
        2) rejected=$((rejected + 1)) ;;
        *) ERRORS=$((ERRORS + 1)) ;;
        esac
    done 3<<<"$rows"
    log "pass finished: $archived archived, $rejected rejected by ffprobe, $ERRORS errors"
}

if [ "${1:-}" = --once ]; then
    sync_pass
    exit $((ERRORS > 0))
fi
while :; do
    sync_pass
    sleep "$SYNC_INTERVAL"
done
