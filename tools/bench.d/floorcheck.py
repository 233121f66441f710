#!/usr/bin/env python3
"""floorcheck.py — does floorrelay keep TCP's semantics? Run by tools/bench before it measures the floor paths.

  floorcheck.py FLOORRELAY [MODE...] [-- RELAY_ARGS...]   (MODE: splice, copy; default both)

RELAY_ARGS (e.g. -b 262144 -t 2) are passed to every relay it starts, after -m MODE.

Starts FLOORRELAY on 127.0.0.1 in front of its own server on 127.0.0.1 (run it inside a namespace of
its own: tools/bench runs it in the lab's gw) and checks, for each mode, that
  - half-close: the user sends 4 MiB and shuts down its write side; the server reads to EOF, answers
    with the byte count and a SHA-256, then 4 MiB of its own and shuts down: every byte arrives,
    in both directions, and each side sees the FIN only after the data;
  - reset, both ways: a server that closes with SO_LINGER 0 makes the user's recv fail with
    ECONNRESET, and a user that does the same makes the server's recv fail with ECONNRESET;
  - refused: a relay whose target has no listener resets the user's connection;
  - a user that stops reading: the server writes 256 MiB while the user reads nothing for 2 s; the
    relay's RSS grows by less than 16 MiB (it stops reading the server), then every byte arrives.
Prints "floorcheck MODE: ok" per mode, or what failed (exit 1).
"""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import traceback
import time

MIB = 1 << 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def recv_all(s):
    out = bytearray()
    while True:
        b = s.recv(1 << 16)
        if not b:
            return bytes(out)
        out += b


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """Accepts one connection at a time and runs the current scenario's handler on it."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.handler, self.result, self.done = None, None, threading.Event()
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            c, _ = self.ls.accept()
            try:
                self.result = self.handler(c)
            except Exception as e:
                self.result = e
            finally:
                c.close()
                self.done.set()

    def expect(self, handler):
        self.handler, self.result = handler, None
        self.done.clear()

    def outcome(self, timeout=30):
        if not self.done.wait(timeout):
            raise AssertionError("server side did not finish")
        return self.result


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def check(relay_bin, mode, extra=()):
    srv = Server()
    port = free_port()
    relay = subprocess.Popen([relay_bin, "-m", mode, *extra, "127.0.0.1", str(port), "127.0.0.1", str(srv.port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                srv.outcome(5)
                break
            except (ConnectionRefusedError, AssertionError):
                if time.monotonic() > deadline:
                    raise AssertionError("relay does not listen")
                time.sleep(0.05)

        def dial():
            return socket.create_connection(("127.0.0.1", port), timeout=20)

        # Half-close: data, then FIN, each way; the reply goes out only after the server saw the FIN.
        up, down = os.urandom(4 * MIB), os.urandom(4 * MIB)

        def half(c):
            got = recv_all(c)
            c.sendall(struct.pack("!Q", len(got)) + hashlib.sha256(got).digest() + down)
            c.shutdown(socket.SHUT_WR)
            return recv_all(c) == b""   # nothing after the FIN
        srv.expect(half)
        s = dial()
        s.sendall(up)
        s.shutdown(socket.SHUT_WR)
        back = recv_all(s)
        s.close()
        n, = struct.unpack("!Q", back[:8])
        assert n == len(up) and back[8:40] == hashlib.sha256(up).digest(), f"half-close: server got {n} of {len(up)} bytes or other bytes"
        assert back[40:] == down, f"half-close: user got {len(back) - 40} of {len(down)} bytes or other bytes"
        assert srv.outcome() is True, f"half-close: server side {srv.result}"

        # The server resets: the user's recv fails with ECONNRESET.
        def server_resets(c):
            assert c.recv(10) == b"ping"
            reset(c)
            return True
        srv.expect(server_resets)
        s = dial()
        s.sendall(b"ping")
        try:
            r = s.recv(10)
            raise AssertionError(f"server reset: the user read {r!r}, not ECONNRESET")
        except ConnectionResetError:
            pass
        s.close()
        srv.outcome()

        # The user resets: the server's recv fails with ECONNRESET.
        def user_resets(c):
            assert c.recv(10) == b"ping"
            c.settimeout(20)
            try:
                r = c.recv(10)
                return f"read {r!r}, not ECONNRESET"
            except ConnectionResetError:
                return True
        srv.expect(user_resets)
        s = dial()
        s.sendall(b"ping")
        time.sleep(0.2)
        reset(s)
        assert srv.outcome() is True, f"user reset: server side {srv.result}"

        # A user that stops reading: the relay must stop reading the server, not buffer.
        total = 256 * MIB

        def blast(c):
            chunk = b"x" * MIB
            for _ in range(total // MIB):
                c.sendall(chunk)
            c.shutdown(socket.SHUT_WR)
            return True
        srv.expect(blast)
        base = rss_kib(relay.pid)
        s = dial()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        time.sleep(2)
        grown = rss_kib(relay.pid) - base
        assert grown < 16 * 1024, f"stalled reader: relay RSS grew by {grown} KiB"
        got = 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += len(b)
        s.close()
        assert got == total, f"stalled reader: user got {got} of {total} bytes"
        assert srv.outcome() is True, f"stalled reader: server side {srv.result}"
        assert relay.poll() is None, "relay exited"
    finally:
        relay.kill()
        relay.wait()

    # No listener behind the relay: the user's connection is reset.
    dead, port = free_port(), free_port()
    relay = subprocess.Popen([relay_bin, "-m", mode, *extra, "127.0.0.1", str(port), "127.0.0.1", str(dead)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise AssertionError("relay does not listen")
                time.sleep(0.05)
        try:
            r = s.recv(10)
            raise AssertionError(f"refused target: the user read {r!r}, not ECONNRESET")
        except ConnectionResetError:
            pass
        s.close()
    finally:
        relay.kill()
        relay.wait()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rc, args = 0, sys.argv[2:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    modes = args[:args.index("--")] if "--" in args else args
    for mode in modes or ["splice", "copy"]:
        try:
            check(sys.argv[1], mode, extra)
            print(f"floorcheck {mode}: ok", flush=True)
        except Exception as e:
            traceback.print_exc()
            print(f"floorcheck {mode}: FAILED: {e}", flush=True)
            rc = 1
    sys.exit(rc)


if __name__ == "__main__":
    main()
