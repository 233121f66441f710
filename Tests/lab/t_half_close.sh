#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# TCP half-close crosses the tunnel both ways (FIN is FINISHED, not the end):
#  A) the user sends a request and shuts its write side; the LAN server reads
#     to EOF, then answers 1 MiB; the user still receives all of it.
#  B) the LAN server says hello and shuts its write side first; the user sees
#     EOF, keeps sending 1 MiB, and the server receives every byte.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

cat >"$TEST_TMP/server.py" <<'PY'
import hashlib, random, socket, sys, threading
def answer(req):                      # 1 MiB derived from the request
    return random.Random(req).randbytes(1 << 20)
def serve(c):
    mode = c.recv(2)
    if mode == b"A\n":
        req = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            req += d
        print(f"A: request of {len(req)} bytes, then EOF", flush=True)
        c.sendall(answer(req))
        c.close()
        print("A: answered", flush=True)
    elif mode == b"B\n":
        c.sendall(b"hello, I am done talking\n")
        c.shutdown(socket.SHUT_WR)
        h, n = hashlib.sha256(), 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            h.update(d); n += len(d)
        print(f"B: received {n} bytes sha256 {h.hexdigest()}", flush=True)
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.77.10", 9000)); s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY

cat >"$TEST_TMP/client.py" <<'PY'
import hashlib, os, random, socket, sys
mode = sys.argv[1]
c = socket.create_connection(("203.0.113.10", 8080), timeout=20)
if mode == "A":
    req = os.urandom(3000)
    c.sendall(b"A\n" + req)
    c.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += d
    want = random.Random(req).randbytes(1 << 20)
    print(f"A: got {len(got)} bytes, {'intact' if got == want else 'CORRUPT'}")
    sys.exit(0 if got == want else 1)
else:
    c.sendall(b"B\n")
    hello = b""
    while True:
        d = c.recv(100)
        if not d:
            break
        hello += d
    print(f"B: server said {hello!r} then EOF")
    assert hello == b"hello, I am done talking\n"
    data = os.urandom(1 << 20)
    c.sendall(data)            # the other direction is still open
    c.shutdown(socket.SHUT_WR)
    assert c.recv(1) == b""     # and closes cleanly
    print(f"B: sent {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}")
PY

bg lanhost server_py python3 "$TEST_TMP/server.py"
wait_log "$TEST_TMP/server_py.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:9000
start_mediator mediator
wait_mediator acme

# A: client half-closes first.
out=$(lab exec user python3 "$TEST_TMP/client.py" A 2>&1) || fail "A: $out"
echo "$out"
assert_contains "$out" "A: got 1048576 bytes, intact"
wait_log "$TEST_TMP/server_py.log" '^A: request of 3000 bytes, then EOF'

# B: server half-closes first.
out=$(lab exec user python3 "$TEST_TMP/client.py" B 2>&1) || fail "B: $out"
echo "$out"
sent=$(sed -n 's/^B: sent \(.*\)$/\1/p' <<<"$out")
[[ -n "$sent" ]] || fail "B: the client did not finish sending"
wait_log "$TEST_TMP/server_py.log" "^B: received $sent\$" 10
echo "ok: $TEST_NAME"
