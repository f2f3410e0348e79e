#!/usr/bin/env python3
"""Decodes a PNG with Python's zlib (not ctvnc's code) and compares it with
the framebuffer rfbserver.py served.

    python3 pngcheck.py FILE N [SCALED_WIDTH]

Prints "WIDTH HEIGHT MISMATCHES" (pixels that differ). With SCALED_WIDTH the
expected image is the full framebuffer (its size after any DesktopSize)
scaled down by area averaging on integer bounds: destination pixel (x, y)
is the rounded mean of the source box [x*W/w, (x+1)*W/w) x [y*H/h, (y+1)*H/h).
"""
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rfbpattern import pixel, scenario_size  # noqa: E402


def decode(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        assert zlib.crc32(kind + body) == crc, "bad CRC in " + kind.decode()
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    w, h, depth, colour, _, _, interlace = ihdr
    # 8-bit RGB (ctvnc's), or RGBA (a browser canvas's): rows come back RGB
    assert depth == 8 and colour in (2, 6) and interlace == 0, "not 8-bit RGB(A)"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            else:
                assert f == 0, "bad filter"
        rows.append(bytes(line) if bpp == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3))
        prev = line
    return w, h, rows


def expected(n, W, H, w, h):
    if w == W and h == H:
        return lambda x, y: pixel(n, x, y)
    full = [[pixel(n, x, y) for x in range(W)] for y in range(H)]

    def scaled(x, y):
        x0, x1 = x * W // w, (x + 1) * W // w
        y0, y1 = y * H // h, (y + 1) * H // h
        cnt = (x1 - x0) * (y1 - y0)
        out = []
        for c in range(3):
            s = sum(full[j][i][c] for j in range(y0, y1) for i in range(x0, x1))
            out.append((s + cnt // 2) // cnt)
        return tuple(out)
    return scaled


def main():
    data = open(sys.argv[1], "rb").read()
    n = int(sys.argv[2])
    w, h, rows = decode(data)
    W, H = scenario_size(n, 1)
    want = expected(n, W, H, w, h)
    bad = 0
    for y in range(h):
        for x in range(w):
            if tuple(rows[y][3 * x:3 * x + 3]) != want(x, y):
                bad += 1
    print(w, h, bad)


if __name__ == "__main__":
    main()
