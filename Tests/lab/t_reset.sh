#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# An RST on one side of a forwarded connection is an RST on the other, never a
# clean EOF:
#  A) the LAN server sends a little, then aborts (SO_LINGER {1,0} + close): the
#     user gets those bytes, then ECONNRESET.
#  B) the user sends a little, then aborts: the LAN server gets those bytes,
#     then ECONNRESET.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

cat >"$TEST_TMP/server.py" <<'PY'
import socket, struct, threading, time
def abort(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
def serve(c):
    mode = c.recv(2)
    if mode == b"A\n":
        c.sendall(b"a little data\n")
        time.sleep(0.3)
        abort(c)
        print("A: aborted", flush=True)
    elif mode == b"B\n":
        got = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    print(f"B: clean EOF after {got!r}", flush=True)
                    break
                got += d
        except ConnectionResetError:
            print(f"B: RESET after {got!r}", flush=True)
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.77.10", 9000)); s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY

cat >"$TEST_TMP/client.py" <<'PY'
import socket, struct, sys, time
mode = sys.argv[1]
c = socket.create_connection(("203.0.113.10", 8080), timeout=10)
if mode == "A":
    c.sendall(b"A\n")
    got = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                print(f"A: clean EOF after {got!r}")
                sys.exit(1)
            got += d
    except ConnectionResetError:
        print(f"A: RESET after {got!r}")
    sys.exit(0 if got == b"a little data\n" else 1)
else:
    c.sendall(b"B\nsome bytes\n")
    time.sleep(0.5)           # let them reach the LAN server first
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    print("B: aborted")
PY

bg lanhost server_py python3 "$TEST_TMP/server.py"
wait_log "$TEST_TMP/server_py.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:9000
start_mediator mediator
wait_mediator acme

out=$(lab exec user python3 "$TEST_TMP/client.py" A 2>&1) || fail "A: $out"
echo "$out"
assert_eq "A: RESET after b'a little data\\n'" "$out" "user side of a LAN abort"

lab exec user python3 "$TEST_TMP/client.py" B
wait_log "$TEST_TMP/server_py.log" '^B: (RESET|clean EOF)' 10
line=$(grep -E '^B: ' "$TEST_TMP/server_py.log")
assert_eq "B: RESET after b'some bytes\\n'" "$line" "LAN side of a user abort"
echo "ok: $TEST_NAME"
