#!/usr/bin/env python3
"""An RFB server behind its own websocket, for the screenshot specs.

    python3 rfbserver.py [--latency=SECONDS] HOST:PORT [HOST:PORT ...]

Listens on each address (loopback only), prints "ready", and serves the
console websocket (any path; the query's uuid picks the scenario). The
framebuffers are known (rfbpattern.py), so a screenshot can be checked
pixel by pixel by an independent PNG decoder (pngcheck.py).

The VM number n is the last 12 hex digits of the uuid the simulator hands
out (vm-<n>). Scenarios by n (others: ZRLE, 64x48, RFB 3.8, None):
   3  Raw, 1x1               5  ZRLE, 1921x1081         7  Raw, 1921x1081
   9  ServerInit 32x16, then DesktopSize to 100x70 without pixels, then
      ZRLE at the new size (after the client's new request)
  11  RFB 3.3, VNC Authentication, password "secret"
  13  RFB 3.7, None, Raw, 17x9, a name with a control character
  15  refused: no security types, a reason carrying the URL's token
  17  not RFB: an HTTP status line in the first binary message
  19  CopyRect, 40x30: Raw top 15 rows, bottom 15 rows copied from them
  21  RFB 3.8, VNC Authentication, password "secret" (reason on failure)
  23  the websocket handshake is refused (HTTP 403)
  25  says nothing after the handshake (timeouts)
  27  a live desktop: Raw, 64x48, the whole screen for every request, for
      as long as the client stays; it honours ClientInit's shared flag as
      TigerVNC does (a non-shared client disconnects the others)
  29  a changing desktop: Raw, 64x48, a different picture on each connection
Every ClientInit is printed, "clientinit N shared=FLAG".
  n >= 1000: ZRLE, 1920x1080, all the same picture (benchmarks)
--latency delays each answer (the 101 and every server message), as a
network round trip would (bench/shots.lua).
"""
import base64
import hashlib
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rfbpattern import pixel, scenario_size  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHALLENGE = bytes(range(16))
PASSWORD = b"secret"


def vnc_response(password, challenge):
    """DES of the challenge with the bit-reversed password, by OpenSSL."""
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.ljust(8, b"\0")[:8])
    out = subprocess.run(
        ["openssl", "enc", "-des-ecb", "-provider", "legacy", "-provider", "default",
         "-K", key.hex(), "-nopad"], input=challenge, capture_output=True, check=True)
    return out.stdout


EXPECTED = vnc_response(PASSWORD, CHALLENGE)
LATENCY = 0.0
LIVE = {}                   # scenario 27: n -> its open connections
LIVE_LOCK = threading.Lock()
CHANGES = [0]               # scenario 29: connections so far


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def recv_exact(self, n):
        while len(self.buf) < n:
            self.buf += self.frame()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def raw_recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def frame(self):
        b0, b1 = self.raw_recv(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack(">H", self.raw_recv(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self.raw_recv(8))[0]
        key = self.raw_recv(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ key[i % 4] for i, c in enumerate(self.raw_recv(length)))
        if b0 & 0x0F == 8:
            raise EOFError
        return data

    def send(self, data):
        if LATENCY:
            time.sleep(LATENCY)
        n = len(data)
        if n < 126:
            head = bytes([0x82, n])
        elif n < 65536:
            head = bytes([0x82, 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x82, 127]) + struct.pack(">Q", n)
        # in pieces of odd sizes, so the client meets split frames
        out = head + data
        step = 7001
        for i in range(0, len(out), step):
            self.sock.sendall(out[i:i + step])


def rgb_rows(n, w, h, x0=0, y0=0, rw=None, rh=None):
    rw = w if rw is None else rw
    rh = h if rh is None else rh
    return [[pixel(n, x, y) for x in range(x0, x0 + rw)] for y in range(y0, y0 + rh)]


def raw_rect(rows):
    return b"".join(bytes((b, g, r, 0)) for row in rows for (r, g, b) in row)


def cpix(p):
    r, g, b = p
    return bytes((b, g, r))


def run_length(n):
    n -= 1
    out = b""
    while n >= 255:
        out += b"\xff"
        n -= 255
    return out + bytes([n])


def runs(pixels):
    out, i = [], 0
    while i < len(pixels):
        j = i
        while j < len(pixels) and pixels[j] == pixels[i]:
            j += 1
        out.append((pixels[i], j - i))
        i = j
    return out


def zrle_tile(pixels, tw, index):
    """One tile, in a subencoding chosen to exercise them all."""
    colours = sorted(set(pixels))
    if len(colours) == 1:
        return b"\x01" + cpix(colours[0])
    pal = {c: i for i, c in enumerate(colours)}
    choice = index % 4
    if choice == 3 and len(colours) <= 16:          # packed palette
        bits = 1 if len(colours) == 2 else 2 if len(colours) <= 4 else 4
        out = bytes([len(colours)]) + b"".join(cpix(c) for c in colours)
        for y in range(len(pixels) // tw):
            acc, nbits, row = 0, 0, b""
            for x in range(tw):
                acc = acc << bits | pal[pixels[y * tw + x]]
                nbits += bits
                if nbits == 8:
                    row += bytes([acc])
                    acc, nbits = 0, 0
            if nbits:
                row += bytes([acc << (8 - nbits)])
            out += row
        return out
    if choice == 2 and len(colours) <= 127:         # palette RLE
        out = bytes([128 + len(colours)]) + b"".join(cpix(c) for c in colours)
        for c, k in runs(pixels):
            out += bytes([pal[c]]) if k == 1 else bytes([pal[c] | 128]) + run_length(k)
        return out
    if choice == 1:                                 # plain RLE
        return b"\x80" + b"".join(cpix(c) + run_length(k) for c, k in runs(pixels))
    return b"\x00" + b"".join(cpix(c) for c in pixels)


CACHE = {}
LOCK = threading.Lock()


def cached(key, make):
    with LOCK:
        if key not in CACHE:
            CACHE[key] = make()
        return CACHE[key]


def zrle_tiles(n, w, h):
    data, index = [], 0
    for ty in range(0, h, 64):
        for tx in range(0, w, 64):
            tw, th = min(64, w - tx), min(64, h - ty)
            pixels = [pixel(n, x, y) for y in range(ty, ty + th) for x in range(tx, tx + tw)]
            data.append(zrle_tile(pixels, tw, index))
            index += 1
    return b"".join(data)


def zrle_rect(z, n, w, h):
    data = cached(("zrle", min(n, 1000), w, h), lambda: zrle_tiles(n, w, h))
    comp = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    return struct.pack(">I", len(comp)) + comp


def rect(x, y, w, h, enc):
    return struct.pack(">HHHHi", x, y, w, h, enc)


def server_init(w, h, name):
    pf = bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
    return struct.pack(">HH", w, h) + pf + struct.pack(">I", len(name)) + name


def read_client_msgs(c):
    """Reads client messages until a FramebufferUpdateRequest."""
    while True:
        t = c.recv_exact(1)[0]
        if t == 0:
            c.recv_exact(19)
        elif t == 2:
            _, count = struct.unpack(">BH", c.recv_exact(3))
            c.recv_exact(4 * count)
        elif t == 3:
            return struct.unpack(">BHHHH", c.recv_exact(9))
        else:
            raise EOFError


def rfb(c, n, query):
    if n == 17:
        c.send(b"HTTP/1.1 200 OK\r\n\r\n")
        return
    if n == 25:
        c.sock.recv(1)
        return
    version = {11: b"003.003", 13: b"003.007"}.get(n, b"003.008")
    c.send(b"RFB " + version + b"\n")
    c.recv_exact(12)
    auth = n in (11, 21)
    if version == b"003.003":
        c.send(struct.pack(">I", 2 if auth else 1))
    elif n == 15:
        token = query.get("token", [""])[0]
        reason = ("console in use\x1b[2J by another session; token " + token).encode()
        c.send(b"\x00" + struct.pack(">I", len(reason)) + reason)
        return
    else:
        c.send(b"\x01\x02" if auth else b"\x01\x01")
        chosen = c.recv_exact(1)[0]
        if chosen != (2 if auth else 1):
            return
    if auth:
        c.send(CHALLENGE)
        if c.recv_exact(16) != EXPECTED:
            reason = b"Authentication failed"
            c.send(struct.pack(">I", 1) + (struct.pack(">I", len(reason)) + reason
                                            if version == b"003.008" else b""))
            return
        c.send(struct.pack(">I", 0))
    elif version == b"003.008":
        c.send(struct.pack(">I", 0))
    shared = c.recv_exact(1)[0]                     # ClientInit
    print("clientinit %d shared=%d" % (n, shared), flush=True)
    if n == 27:
        live(c, n, shared)
        return
    if shared != 1:
        return
    w, h = scenario_size(n, 0)
    name = b"bad\x07name" if n == 13 else b"desk-%d" % n
    c.send(server_init(w, h, name))
    z = zlib.compressobj()
    inc, x, y, rw, rh = read_client_msgs(c)
    if inc != 0 or (x, y, rw, rh) != (0, 0, w, h):
        return
    if n == 9:
        w, h = scenario_size(n, 1)
        c.send(b"\x00\x00" + struct.pack(">H", 1) + rect(0, 0, w, h, -223))
        inc, x, y, rw, rh = read_client_msgs(c)
        if inc != 0 or (x, y, rw, rh) != (0, 0, w, h):
            return
    if n == 29:
        with LIVE_LOCK:
            CHANGES[0] += 1
            k = CHANGES[0]
        body = rect(0, 0, w, h, 0) + raw_rect(rgb_rows(29 + 2 * k, w, h))
        c.send(b"\x00\x00" + struct.pack(">H", 1) + body)
    elif n in (3, 7, 13):
        body = rect(0, 0, w, h, 0) + cached(("raw", n), lambda: raw_rect(rgb_rows(n, w, h)))
        c.send(b"\x00\x00" + struct.pack(">H", 1) + body)
    elif n == 19:
        top = rect(0, 0, w, 15, 0) + raw_rect(rgb_rows(n, w, 15))
        copy = rect(0, 15, w, 15, 1) + struct.pack(">HH", 0, 0)
        # a bell and a cut text first: messages a client must skip
        c.send(b"\x02" + b"\x03\x00\x00\x00" + struct.pack(">I", 5) + b"hello")
        c.send(b"\x00\x00" + struct.pack(">H", 2) + top + copy)
    else:
        c.send(b"\x00\x00" + struct.pack(">H", 1) + rect(0, 0, w, h, 16) + zrle_rect(z, n, w, h))
    try:
        c.sock.recv(1)      # until the client leaves
    except OSError:
        pass


def live(c, n, shared):
    """Scenario 27: the whole screen in Raw for every request; a non-shared
    ClientInit disconnects the desktop's other clients."""
    with LIVE_LOCK:
        others = LIVE.setdefault(n, set())
        if not shared:
            for other in others:
                try:
                    other.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        others.add(c)
    try:
        w, h = scenario_size(n, 0)
        c.send(server_init(w, h, b"desk-%d" % n))
        update = b"\x00\x00" + struct.pack(">H", 1) + rect(0, 0, w, h, 0) + raw_rect(
            rgb_rows(n, w, h))
        while True:
            read_client_msgs(c)
            c.send(update)
    finally:
        with LIVE_LOCK:
            LIVE[n].discard(c)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1].decode()
        headers = {}
        for line in lines[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
        query = urllib.parse.parse_qs(urllib.parse.urlparse(target).query)
        uuid = query.get("uuid", ["0"])[0]
        n = int(uuid[-12:], 16) if len(uuid) >= 12 else 0
        if n == 23:
            sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        key = headers.get(b"sec-websocket-key", b"")
        if LATENCY:
            time.sleep(LATENCY)
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        proto = b"Sec-WebSocket-Protocol: binary\r\n" if b"binary" in headers.get(
            b"sec-websocket-protocol", b"") else b""
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
                     + proto + b"\r\n")
        try:
            rfb(Conn(sock), n, query)
        except (EOFError, OSError):
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    global LATENCY
    servers = []
    for addr in sys.argv[1:]:
        if addr.startswith("--latency="):
            LATENCY = float(addr.split("=", 1)[1])
            continue
        host, port = addr.rsplit(":", 1)
        assert host.startswith("127."), "loopback only"
        servers.append(Server((host, int(port)), Handler))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
