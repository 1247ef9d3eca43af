#!/usr/bin/env python3
"""Benchmark context (scripts/bench.sh, row 3): the kernel's part of the file work a pass
does for COUNT small files, with nothing else: per file a temp file of SIZE bytes written,
renamed into a month directory, a sidecar of ~600 bytes written beside it; one syncfs per
64 files (a pass shares one among the files finishing together). Prints the system CPU
seconds it took (getrusage): the interpreter's own user time is not the kernel's work.

Usage: file_floor.py DIR COUNT SIZE
"""
import ctypes
import os
import resource
import sys


def main() -> int:
    root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    tmp, month = os.path.join(root, ".tmp"), os.path.join(root, "2026", "11")
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(month, exist_ok=True)
    body, sidecar = os.urandom(size), b"x" * 600
    fs = os.open(root, os.O_RDONLY)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for i in range(count):
        part = os.path.join(tmp, f"{i}.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, body)
        os.close(fd)
        dest = os.path.join(month, f"{i}-f{i:04}.bin")
        os.rename(part, dest)
        fd = os.open(dest + ".json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, sidecar)
        os.close(fd)
        if i % 64 == 63 and libc.syncfs(fs) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
    libc.syncfs(fs)
    print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_stime - before:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
