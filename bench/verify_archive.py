#!/usr/bin/env python3
"""Checks what a timed sync pass left behind (scripts/bench.sh, after r2-sync's and the bash
loop's passes), so a broken tool fails the bench instead of reporting a fast nothing.

    psql ... -c "SELECT id, archive_path, file_size, r2_key FROM media WHERE status = 'archived'" |
        verify_archive.py ARCHIVE_DIR BUCKET_DIR EXPECTED

stdin: one archived row a line, tab-separated: id, archive_path, file_size, r2_key.
For each: the file is at ARCHIVE_DIR/archive_path with file_size bytes, its sidecar
<file>.json beside it parses as a JSON object naming the row's id (media_id), and the object
is gone from the bucket (BUCKET_DIR/r2_key: the test S3 server keeps each object as a file
there). There must be EXPECTED such rows. Prints one line of what it checked; exits 1 with
the first problems found.
"""
import json
import os
import sys


def main() -> int:
    archive, bucket, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if not os.path.isdir(bucket):
        print(f"no bucket directory {bucket}", file=sys.stderr)
        return 1
    problems: list[str] = []
    rows = 0
    total = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        rows += 1
        media_id, rel, size, key = line.rstrip("\n").split("\t", 3)
        if not rel:
            problems.append(f"media {media_id}: archived without an archive_path")
            continue
        path = os.path.join(archive, rel)
        try:
            got = os.stat(path).st_size
        except OSError as e:
            problems.append(f"media {media_id}: no archived file at {path} ({e.strerror})")
            continue
        total += got
        if size and got != int(size):
            problems.append(f"media {media_id}: {path} has {got} bytes, the row says {size}")
        try:
            with open(path + ".json") as f:
                sidecar = json.load(f)
            if not isinstance(sidecar, dict) or str(sidecar.get("media_id")) != media_id:
                problems.append(f"media {media_id}: the sidecar {path}.json does not name media_id {media_id}")
        except (OSError, ValueError) as e:
            problems.append(f"media {media_id}: no readable sidecar {path}.json ({e})")
        if os.path.lexists(os.path.join(bucket, key)):
            problems.append(f"media {media_id}: the object {key} is still in the bucket")
    if rows != expected:
        problems.insert(0, f"{rows} archived rows, {expected} expected")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        print("; ".join(problems[:5]) + more, file=sys.stderr)
        return 1
    print(f"{rows} files ({total} bytes) archived with sidecars, their objects gone from the bucket")
    return 0


if __name__ == "__main__":
    sys.exit(main())
