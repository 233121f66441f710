#!/usr/bin/env python3
"""A hostile peer for Tests/lab/t_hardening_bounds.sh: speaks the tunnel's wire format
(docs/protocol.md, plain TCP: the real end runs with --insecure) and misbehaves once established.

  hostile_peer.py mediator HOST PORT NAME SECRET ATTACK [SECONDS]
      a fake mediator; ATTACK: pings | empty-data | early-frames | bogus-accepted | goaway (a GOAWAY
      whose message clears the screen and forges a log line; an ENVIRONMENT hostname that does too)
  hostile_peer.py server PORT SECRET ATTACK [SECONDS]
      a fake server on PORT; ATTACK: pings | empty-data (CONNECT to 192.168.77.10:80 first)
  hostile_peer.py rss PID SECONDS
      samples /proc/PID/status every 50 ms; prints "max_rss_kib N" each time the peak grows
  hostile_peer.py flood HOST PORT SECONDS SOURCE...
      new connections from each SOURCE address as fast as it can: idle ones, garbage, slow TLS
      ClientHellos; holds at most 4000 sockets; stops by itself.

Every attack stops by itself after SECONDS (default 20) and prints what it did.
"""
import hashlib
import hmac
import os
import random
import resource
import select
import socket
import struct
import sys
import time

HELLO, CHALLENGE, AUTHENTICATE, WELCOME, REFUSED, ENVIRONMENT = 1, 2, 3, 4, 5, 6
PING, PONG, GOAWAY = 7, 8, 9
OPEN, CONNECT, LISTEN, DONE, FAILED = 0x10, 0x12, 0x13, 0x18, 0x19
DATA, WINDOW, ACCEPTED, FINISHED, RESET = 0x20, 0x22, 0x23, 0x24, 0x25


def frame(t, payload=b""):
    return struct.pack(">IBB", len(payload), t, 0) + payload


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def ipv4(a, port=None):
    out = b"\x01" + socket.inet_aton(a)
    return out + (struct.pack(">H", port) if port is not None else b"")


def proof(secret, label, snonce, mnonce, name):
    msg = label.encode() + b"\x00" + snonce + mnonce + name.encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def frame(self, timeout=10):
        end = time.time() + timeout
        while True:
            if len(self.buf) >= 6:
                n, t, _ = struct.unpack(">IBB", self.buf[:6])
                if len(self.buf) >= 6 + n:
                    p = self.buf[6:6 + n]
                    self.buf = self.buf[6 + n:]
                    return t, p
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def skip(self, data):
        """Drops the whole frames in buffer + data unread, keeping a cut one for later reads."""
        buf, i = self.buf + data, 0
        while len(buf) - i >= 6:
            n = struct.unpack_from(">I", buf, i)[0]
            if len(buf) - i < 6 + n:
                break
            i += 6 + n
        self.buf = buf[i:]

    def until(self, wanted, timeout=10):
        """Reads frames, answering PINGs, until one of type `wanted`."""
        while True:
            t, p = self.frame(timeout)
            if t == PING:
                self.sock.sendall(frame(PONG, p))
            elif t == wanted:
                return p
            elif t in (REFUSED, GOAWAY):
                raise RuntimeError(f"refused: {p!r}")


def blast(sock, chunk, seconds):
    """Sends `chunk` over and over without reading, until the peer closes or time is up.
    A partial send is finished before the next chunk, so the stream stays whole frames (a cut
    frame would make this a garbage attack, which is not what the callers test)."""
    sock.setblocking(False)
    sent, end, view = 0, time.time() + seconds, memoryview(chunk)
    while time.time() < end:
        _, w, _ = select.select([], [sock], [], 0.2)
        if not w:
            continue
        try:
            n = sock.send(view)
        except BlockingIOError:
            continue
        except OSError as e:
            return sent, f"closed by the peer ({e.strerror})"
        sent += n
        view = view[n:] or memoryview(chunk)
    return sent, "time up"


def fake_mediator(host, port, name, secret, attack, seconds):
    s = socket.create_connection((host, port), timeout=10)
    r = Reader(s)
    mnonce = os.urandom(32)
    s.sendall(frame(HELLO, b"PSTN" + struct.pack(">H", 1) + string(name) + string("hostile") + mnonce
                    + struct.pack(">II", 4 << 20, 1049600)))
    p = r.until(CHALLENGE)
    snonce = p[2:34]
    s.sendall(frame(AUTHENTICATE, proof(secret, "postern-v1 mediator proof", snonce, mnonce, name)))
    r.until(WELCOME)
    host = "hostile\x1b[2J\nFORGED-HOST" if attack == "goaway" else "hostile"
    s.sendall(frame(ENVIRONMENT, string(host) + string("0") + struct.pack(">IHH", 0, 0, 0)))
    print("established", flush=True)
    if attack == "goaway":
        time.sleep(1)
        message = "bye\x1b[2J\nFORGED: mediator 'beta' connected\u202e" + "x" * 5000
        s.sendall(frame(GOAWAY, struct.pack(">H", 17) + string(message)))
        print("goaway sent", flush=True)
        time.sleep(1)
    if attack == "pings":
        # PINGs as fast as the socket takes them; PONGs are never read.
        chunk = b"".join(frame(PING, struct.pack(">Q", i)) for i in range(4096))
        sent, how = blast(s, chunk, seconds)
        print(f"pings: sent {sent // 14} PINGs, {how}", flush=True)
    elif attack == "empty-data":
        # A user connects to the forward: answer its CONNECT, fill the user's socket (it does not
        # read), then send empty DATA as fast as possible.
        p = r.until(CONNECT, timeout=30)
        req = struct.unpack(">I", p[:4])[0]
        s.sendall(frame(DONE, struct.pack(">II", req, 7) + ipv4("192.168.77.2", 40000)))
        print("connected port 7", flush=True)
        s.sendall(frame(DATA, struct.pack(">I", 7) + b"x" * (1 << 20)) * 3)
        chunk = frame(DATA, struct.pack(">I", 7)) * 8192
        sent, how = blast(s, chunk, seconds)
        print(f"empty-data: sent {sent // 10} empty DATA, {how}", flush=True)
    elif attack == "early-frames":
        # The server opens and listens for a reverse forward; announce a connection and send
        # frames before its own connect can finish (one write: one read on the server).
        listener = None
        for _ in range(2):
            t, p = r.frame(30)
            while t not in (OPEN, LISTEN):
                t, p = r.frame(30)
            req = struct.unpack(">I", p[:4])[0]
            listener = 1
            s.sendall(frame(DONE, struct.pack(">II", req, listener) + ipv4("0.0.0.0", 5000)))
        burst = frame(ACCEPTED, struct.pack(">II", listener, 2) + ipv4("192.168.77.10", 50000))
        for i in range(100):
            burst += frame(DATA, struct.pack(">I", 2) + b"y") + frame(WINDOW, struct.pack(">II", 2, 1))
        s.sendall(burst)
        print("early-frames: sent ACCEPTED then 200 frames", flush=True)
        # Read what the server answers: RESET for port 2 is the proof it gave up on that port.
        end = time.time() + seconds
        while time.time() < end:
            try:
                t, p = r.frame(max(0.1, end - time.time()))
            except (TimeoutError, socket.timeout):
                break
            if t == PING:
                s.sendall(frame(PONG, p))
            if t == RESET and struct.unpack(">I", p[:4])[0] == 2:
                print(f"early-frames: RESET port 2 code {struct.unpack('>H', p[4:6])[0]}", flush=True)
                break
    elif attack == "bogus-accepted":
        # ACCEPTED for a listener the server never asked for, with ever new port ids.
        # Whole frames only: a chunk the socket took in part is finished before the next one.
        n, end, pid, pending = 0, time.time() + seconds, 100, memoryview(b"")
        s.setblocking(False)
        while time.time() < end and (n < 200_000 or pending):
            if not pending:
                pending = memoryview(b"".join(
                    frame(ACCEPTED, struct.pack(">II", 999, pid + i) + ipv4("192.168.77.10", 1))
                    for i in range(1000)))
                pid += 1000
                n += 1000
            select.select([s], [s], [], 0.2)
            try:
                pending = pending[s.send(pending):]
            except BlockingIOError:
                pass
            try:
                while chunk := s.recv(1 << 20):
                    r.skip(chunk)
            except BlockingIOError:
                pass
        if pending:
            n -= 1000   # time ran out in the middle of a chunk: the stream ends cut, say so
            print("bogus-accepted: time up in the middle of a chunk", flush=True)
        print(f"bogus-accepted: sent {n}", flush=True)
        # Stay connected (answering PINGs) so the server's port table can be looked at.
        s.setblocking(True)
        try:
            r.until(GOAWAY, timeout=6)
        except (TimeoutError, socket.timeout, RuntimeError, EOFError):
            pass
    s.close()


def fake_server(port, secret, attack, seconds):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4)
    print("listening", flush=True)
    s, _ = ls.accept()
    r = Reader(s)
    t, p = r.frame()
    assert t == HELLO, t
    name_len = struct.unpack(">H", p[6:8])[0]
    name = p[8:8 + name_len].decode()
    soft_len = struct.unpack(">H", p[8 + name_len:10 + name_len])[0]
    mnonce = p[10 + name_len + soft_len:42 + name_len + soft_len]
    snonce = os.urandom(32)
    s.sendall(frame(CHALLENGE, struct.pack(">H", 1) + snonce))
    r.until(AUTHENTICATE)
    s.sendall(frame(WELCOME, struct.pack(">Q", 1) + proof(secret, "postern-v1 server proof", snonce, mnonce, name)
                    + struct.pack(">IIII", 10_000, 30_000, 4 << 20, 1049600)))
    print("established", flush=True)
    if attack == "pings":
        chunk = b"".join(frame(PING, struct.pack(">Q", i)) for i in range(4096))
        sent, how = blast(s, chunk, seconds)
        print(f"pings: sent {sent // 14} PINGs, {how}", flush=True)
    elif attack == "empty-data":
        s.sendall(frame(CONNECT, struct.pack(">II", 1, 0) + ipv4("192.168.77.10", 80)))
        p = r.until(DONE)
        port_id = struct.unpack(">I", p[4:8])[0]
        print(f"connected port {port_id}", flush=True)
        chunk = frame(DATA, struct.pack(">I", port_id)) * 8192
        sent, how = blast(s, chunk, seconds)
        print(f"empty-data: sent {sent // 10} empty DATA, {how}", flush=True)
    s.close()


def sample_rss(pid, seconds):
    peak, end = 0, time.time() + seconds
    while time.time() < end:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:") and int(line.split()[1]) > peak:
                        peak = int(line.split()[1])
                        print(f"max_rss_kib {peak}", flush=True)
        except FileNotFoundError:
            break
        time.sleep(0.05)
    print(f"max_rss_kib {peak}", flush=True)


def flood(host, port, seconds, sources):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    # The first bytes of a TLS ClientHello record, then nothing: the server waits for the rest.
    slow_hello = bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03" + os.urandom(16)
    held, made, end, i = [], 0, time.time() + seconds, 0
    while time.time() < end:
        src = sources[i % len(sources)]
        i += 1
        try:
            c = socket.socket()
            c.setblocking(False)
            c.bind((src, 0))
            try:
                c.connect((host, port))
            except BlockingIOError:
                pass
            p = select.poll()  # not select(): descriptors pass 1024 here
            p.register(c, select.POLLOUT)
            p.poll(500)
            kind = i % 3
            if kind == 1:
                c.send(os.urandom(64))
            elif kind == 2:
                c.send(slow_hello)
            held.append(c)
            made += 1
        except OSError:
            c.close()
        if len(held) > 4000:
            for c in held[:1000]:
                c.close()
            del held[:1000]
    for c in held:
        c.close()
    print(f"flood: {made} connections in {seconds} s from {len(sources)} addresses", flush=True)


def main():
    a = sys.argv[1:]
    if a[0] == "mediator":
        fake_mediator(a[1], int(a[2]), a[3], a[4].encode(), a[5], float(a[6]) if len(a) > 6 else 20)
    elif a[0] == "server":
        fake_server(int(a[1]), a[2].encode(), a[3], float(a[4]) if len(a) > 4 else 20)
    elif a[0] == "rss":
        sample_rss(int(a[1]), float(a[2]))
    elif a[0] == "flood":
        flood(a[1], int(a[2]), float(a[3]), a[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
