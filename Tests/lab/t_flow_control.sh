#!/usr/bin/env bash
# Per-port flow control (DESIGN.md, "The tunnel"): a reader that stops reading stalls only its
# own port. While one forwarded connection has a LAN server pushing data at it and nobody reading,
# another connection on the same tunnel still moves 64 MB, the processes' memory stays bounded by
# the window, and the stalled connection's bytes are all there, intact, when it reads at last.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
postern_setup

# A LAN server that sends a deterministic pattern forever (until the client goes).
cat >"$TEST_TMP/pusher.py" <<'PY'
import socket, threading
def pattern(n):
    return bytes((i * 7 + 3) & 0xff for i in range(n))
BLOCK = pattern(65536)
def serve(c):
    try:
        while True:
            c.sendall(BLOCK)
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.77.10", 8000)); s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
bg lanhost pusher python3 "$TEST_TMP/pusher.py"
wait_listen lanhost 8000
start_server server --forward tcp:0.0.0.0:8080=acme/192.168.77.10:8000
server_pid=$(last_bg_pid)
start_mediator mediator
mediator_pid=$(last_bg_pid)
wait_mediator acme

cat >"$TEST_TMP/client.py" <<'PY'
import socket, sys, time
BLOCK = bytes((i * 7 + 3) & 0xff for i in range(65536))
def read_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise SystemExit("EOF after %d bytes" % len(buf))
        buf += chunk
    return bytes(buf)
stalled = socket.create_connection(("203.0.113.10", 8080))
stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
time.sleep(1.5)  # let the stalled port's window and socket buffers fill up
print("stalled connection open, not reading", flush=True)
t0 = time.time()
busy = socket.create_connection(("203.0.113.10", 8080))
total = 0
while total < 64 << 20:
    chunk = busy.recv(1 << 20)
    if not chunk:
        raise SystemExit("busy connection ended early")
    total += len(chunk)
elapsed = time.time() - t0
print("busy connection moved %d MB in %.2f s" % (total >> 20, elapsed), flush=True)
busy.close()
if elapsed > 20:
    raise SystemExit("the busy connection was slowed down by the stalled one")
# The stalled connection still has its data, in order.
data = read_exact(stalled, 8 * len(BLOCK))
if data != BLOCK * 8:
    raise SystemExit("stalled connection's data is corrupt")
print("stalled connection intact", flush=True)
stalled.close()
PY
lab exec user python3 "$TEST_TMP/client.py" >"$TEST_TMP/client.log" 2>&1 &
client=$!
sleep 4
# While the stalled port is full, the relays hold at most its window: check memory.
for who in server mediator; do
    pid=${who}_pid
    pid=${!pid}
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo "$who RSS ${rss} kB with a stalled port"
    ((rss < 150 * 1024)) || fail "$who uses ${rss} kB while a port is stalled: memory is not bounded"
done
wait "$client" || fail "client failed: $(cat "$TEST_TMP/client.log")"
cat "$TEST_TMP/client.log"
assert_contains "$(cat "$TEST_TMP/client.log")" "stalled connection intact" "stalled stream intact"
echo "flow control OK"
