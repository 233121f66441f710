#!/usr/bin/env python3
"""Connection bursts, for tools/bench (--only burst) and Tests/lab/t_burst.sh.

  burst.py serve ADDR PORT
      echo server (asyncio, listen backlog 4096): prints "listening", then echoes every byte.
  burst.py run HOST PORT CLIENTS PER_CLIENT [TIMEOUT]
      CLIENTS processes at once, each opening PER_CLIENT connections back to back (blocking
      connect, one byte sent on each as soon as it is open), then waiting for all their echoes
      until TIMEOUT seconds (default 60) after the start. Prints key=value lines:
        expected, opened, echoes, resets (RST or EOF instead of the echo), connect_failed,
        timed_out (no echo by the deadline), seconds (start to last echo), open_seconds (start
        to the last connection open).

A connection counts as an echo only when the byte it sent comes back on it. The kernel's listen
backlog of whatever answers HOST:PORT holds connections its owner does not accept yet: a client
sees those as open at once, and then waits for its echo like any other.
"""
import asyncio
import multiprocessing
import resource
import selectors
import socket
import sys
import time


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))


def serve(addr, port):
    raise_nofile(1 << 20)
    async def echo(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(echo, addr, port, backlog=4096, reuse_address=True)
        print("listening", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def one_client(host, port, n, deadline, index, out):
    t0 = time.monotonic()
    socks, res = [], dict(opened=0, echoes=0, resets=0, connect_failed=0, timed_out=0)
    last_open = t0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            s.connect((host, port))
            s.send(bytes([0x41 + (index + i) % 26]))
        except OSError:
            res["connect_failed"] += 1
            s.close()
            continue
        res["opened"] += 1
        last_open = time.monotonic()
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    want = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        want[s] = None
    last_echo = t0
    while want and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
            s = key.fileobj
            try:
                got = s.recv(16)
                res["echoes" if got else "resets"] += 1
                last_echo = time.monotonic()
            except BlockingIOError:
                continue
            except OSError:
                res["resets"] += 1
            sel.unregister(s)
            del want[s]
    res["timed_out"] = len(want)
    res["seconds"] = last_echo - t0
    res["open_seconds"] = last_open - t0
    for s in socks:
        s.close()
    out.put(res)


def run(host, port, clients, per_client, timeout):
    raise_nofile(per_client + 64)
    out = multiprocessing.Queue()
    deadline = time.monotonic() + timeout
    procs = [multiprocessing.Process(target=one_client, args=(host, port, per_client, deadline, c, out)) for c in range(clients)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    total = {k: sum(r[k] for r in results) for k in ("opened", "echoes", "resets", "connect_failed", "timed_out")}
    print(f"expected={clients * per_client}")
    for k, v in total.items():
        print(f"{k}={v}")
    print(f"seconds={max(r['seconds'] for r in results):.3f}")
    print(f"open_seconds={max(r['open_seconds'] for r in results):.3f}")


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "serve":
        serve(a[1], int(a[2]))
    elif len(a) in (5, 6) and a[0] == "run":
        run(a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5]) if len(a) == 6 else 60.0)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
