#!/usr/bin/env python3
"""SIGKILL a process once its download has reached a byte threshold (scripts/bench.sh, row 4).

Progress is read from one of:
  --file PATTERN     the size of the file a glob pattern names (r2-sync's
                     `<ARCHIVE_DIR>/.r2-sync-tmp/<instance>/<id>.part`, written sequentially:
                     `*` stands for the instance's directory);
  --stats-url URL    the test S3 server's `GET /_stats` counter minus --base (rclone: its
                     multi-thread download writes at offsets into a preallocated file, so the
                     file's size says nothing about progress).

Prints the progress value seen when the signal was sent. Exits 1 if the process ended
before the threshold or the timeout passed, so the harness fails loudly instead of
measuring nothing.
"""
import argparse
import glob
import json
import os
import signal
import sys
import time
import urllib.request


def alive(pid: int) -> bool:
    # A zombie still answers kill(0); read its state instead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--at", type=int, required=True, help="threshold in bytes")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file")
    src.add_argument("--stats-url")
    p.add_argument("--base", type=int, default=0, help="counter value before the process started")
    p.add_argument("--timeout", type=float, default=600.0)
    a = p.parse_args()

    def progress() -> int:
        if a.file:
            try:
                return max((os.stat(f).st_size for f in glob.glob(a.file)), default=0)
            except FileNotFoundError:
                return 0
        with urllib.request.urlopen(a.stats_url, timeout=5) as r:
            return json.load(r)["get_body_bytes"] - a.base

    deadline = time.monotonic() + a.timeout
    while True:
        done = progress()
        if done >= a.at:
            os.kill(a.pid, signal.SIGKILL)
            print(done)
            return 0
        if not alive(a.pid):
            print(f"kill_at: process {a.pid} ended at {done} bytes, before {a.at}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"kill_at: {a.timeout}s passed at {done} bytes, before {a.at}", file=sys.stderr)
            return 1
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(main())
