#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# 200 connections at once through one mediator: a python client in user opens
# them all, an echo server in lanhost holds every one until all 200 are open
# at the same time (a barrier), then each sends 64 KiB of its own random bytes,
# half-closes, and must get exactly those bytes back.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup
N=200

cat >"$TEST_TMP/echo.py" <<'PY'
import asyncio, sys
N = int(sys.argv[1])
active = 0
peak = 0
all_here = asyncio.Event()

async def handle(reader, writer):
    global active, peak
    active += 1
    peak = max(peak, active)
    if active >= N:
        all_here.set()
    try:
        hello = await reader.readline()            # "hello ID\n"
        try:
            await asyncio.wait_for(all_here.wait(), 25)
        except asyncio.TimeoutError:
            print(f"barrier timeout: only {active} of {N} connections open", flush=True)
            writer.close()
            return
        writer.write(b"ok " + hello)
        await writer.drain()
        while True:                               # echo until the client's FIN
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except Exception as e:
        print(f"connection error: {e!r}", flush=True)
    finally:
        writer.close()
        active -= 1

async def main():
    srv = await asyncio.start_server(handle, "192.168.77.10", 9000, backlog=1024)
    print("listening", flush=True)
    async with srv:
        while True:
            await asyncio.sleep(1)
            print(f"peak {peak}", flush=True)
asyncio.run(main())
PY

cat >"$TEST_TMP/client.py" <<'PY'
import asyncio, os, sys, time
N, SIZE = int(sys.argv[1]), 64 * 1024

async def one(i, conns):
    r, w = conns[i]
    payload = os.urandom(SIZE)
    try:
        w.write(b"hello %d\n" % i)
        await w.drain()
        line = await r.readline()
        if line != b"ok hello %d\n" % i:
            return f"conn {i}: bad greeting {line!r}"
        async def send():
            w.write(payload)
            await w.drain()
            w.write_eof()
        sender = asyncio.create_task(send())
        got = await r.read()          # until EOF
        await sender
    except Exception as e:
        return f"conn {i}: {e!r}"
    finally:
        w.close()
    if got != payload:
        return f"conn {i}: got {len(got)} bytes, expected {SIZE} (content {'differs' if len(got) == SIZE else 'short'})"
    return None

async def main():
    t0 = time.time()
    conns = await asyncio.gather(*[asyncio.open_connection("203.0.113.10", 8080) for _ in range(N)])
    errors = [e for e in await asyncio.wait_for(asyncio.gather(*[one(i, conns) for i in range(N)]), 60) if e]
    for e in errors[:10]:
        print(e)
    print(f"{N - len(errors)}/{N} connections intact in {time.time() - t0:.2f}s")
    sys.exit(1 if errors else 0)
asyncio.run(main())
PY

bg lanhost echo python3 "$TEST_TMP/echo.py" "$N"
wait_log "$TEST_TMP/echo.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:9000
start_mediator mediator
wait_mediator acme

out=$(lab exec user python3 "$TEST_TMP/client.py" "$N" 2>&1) || fail "client: $out"
echo "$out"
assert_contains "$out" "$N/$N connections intact"
wait_log "$TEST_TMP/echo.log" "^peak $N\$" 3
if grep -Eq 'barrier timeout|connection error' "$TEST_TMP/echo.log"; then
    fail "echo server reported: $(grep -E 'barrier timeout|connection error' "$TEST_TMP/echo.log" | head -3)"
fi
echo "ok: $TEST_NAME"
