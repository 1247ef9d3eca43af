#!/usr/bin/env python3
"""Writes docs/icon.png, the Unraid template's icon: 256x256, an archive box under a cloud.

Standard library only (zlib + struct), so `make icon` runs anywhere Python does.
"""
import struct
import zlib
from pathlib import Path

SIZE = 256
BACKGROUND = (246, 130, 31)  # Cloudflare-like orange
INK = (255, 255, 255)


def inside(x, y):
    """True where the white figure is: a cloud (three discs and a bar) over a box."""
    discs = [(96, 84, 34), (140, 70, 44), (180, 92, 30)]
    cloud = any((x - cx) ** 2 + (y - cy) ** 2 <= r * r for cx, cy, r in discs)
    cloud = cloud or (70 <= x <= 200 and 84 <= y <= 122)
    box = 64 <= x <= 192 and 146 <= y <= 214
    lid_slot = 104 <= x <= 152 and 162 <= y <= 172
    return (cloud or box) and not lid_slot


def png(width, height, pixel):
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "icon.png"
    out.write_bytes(png(SIZE, SIZE, lambda x, y: INK if inside(x, y) else BACKGROUND))
    print(f"wrote {out}")
