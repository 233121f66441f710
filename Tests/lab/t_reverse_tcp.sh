#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# tcp:acme/0.0.0.0:9000=203.0.113.10:2222: the mediator listens on its LAN
# port 9000; lanhost connects there and talks to an echo service in wan:
# a line exchange, then 5 MiB each way at once with SHA-256 checks.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

cat >"$TEST_TMP/echo.py" <<'PY'
import socket, threading
def serve(c, peer):
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
    c.close()
    print(f"echoed {n} bytes for {peer[0]}", flush=True)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 2222)); s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
PY

cat >"$TEST_TMP/client.py" <<'PY'
import hashlib, os, socket, threading, time
c = socket.create_connection(("192.168.77.2", 9000), timeout=20)
f = c.makefile("rb")
for i in range(5):                       # small request/response turns
    line = b"ping %d\n" % i
    c.sendall(line)
    assert f.readline() == line, f"turn {i}: bad echo"
print("5 line turns ok")
data = os.urandom(5 << 20)
t0 = time.time()
def send():
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send); t.start()
h, n = hashlib.sha256(), 0
while True:
    d = f.read1(65536)
    if not d:
        break
    h.update(d); n += len(d)
t.join()
ok = n == len(data) and h.hexdigest() == hashlib.sha256(data).hexdigest()
print(f"5 MiB both ways: {n} bytes back in {time.time() - t0:.2f}s, sha256 {'matches' if ok else 'DIFFERS'}")
raise SystemExit(0 if ok else 1)
PY

bg wan echo python3 "$TEST_TMP/echo.py"
wait_log "$TEST_TMP/echo.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:acme/0.0.0.0:9000=203.0.113.10:2222
start_mediator mediator --allow-listen
wait_mediator acme
wait_listen lan 9000
wait_log "$TEST_TMP/server.log" "mediator 'acme' listens on 0\\.0\\.0\\.0:9000"

out=$(lab exec lanhost python3 "$TEST_TMP/client.py" 2>&1) || fail "client: $out"
echo "$out"
assert_contains "$out" "sha256 matches"
wait_log "$TEST_TMP/echo.log" "^echoed $(((5 << 20) + 35)) bytes for 203\\.0\\.113\\.10" 5
# A second connection works as well.
out=$(lab exec lanhost python3 "$TEST_TMP/client.py" 2>&1) || fail "second client: $out"
assert_contains "$out" "sha256 matches"
echo "ok: $TEST_NAME"
