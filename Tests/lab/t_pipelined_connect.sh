#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Pipelined CONNECT (docs/protocol.md §5.3) through tcp: forwards: the user's bytes travel right
# behind the CONNECT under a server-chosen port id (0x80000001 and up), before DONE.
#  - a mediator announces it (ctl mediators: pipelined-connect) and its ports carry server ids;
#  - curl of a LAN page and a 20 MB download, byte-exact (SHA-256);
#  - half-close: the user sends, shuts its write side at once, and still gets the whole answer;
#  - a server-speaks-first service (a banner on accept) still works;
#  - a closed LAN port: the user sees a reset quickly, the server logs the refusal;
#  - a destination the mediator's --allow list denies: reset, logged on both ends, nothing sent;
#  - a mediator with --no-pipelined-connect is served the old way (port ids below 0x80000000);
#  - rrload rate through the forward: connections/s with zero failures.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mkdir -p "$TEST_TMP/www"
head -c $((20 << 20)) /dev/urandom >"$TEST_TMP/www/big.bin"
echo "hello through a pipelined connect" >"$TEST_TMP/www/index.html"
want=$(sha256sum <"$TEST_TMP/www/big.bin" | cut -d' ' -f1)

cat >"$TEST_TMP/halfclose.py" <<'PY'
import random, socket, threading
def serve(c):
    req = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        req += d
    print(f"request of {len(req)} bytes, then EOF", flush=True)
    c.sendall(random.Random(req).randbytes(1 << 20))
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.77.10", 9000)); s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY

cat >"$TEST_TMP/client.py" <<'PY'
import os, random, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic()
try:
    c = socket.create_connection(("203.0.113.10", port), timeout=10)
except ConnectionResetError:            # the RST beat connect(2)'s return (a denied destination is quick)
    print(f"reset after {time.monotonic() - t0:.3f}s (at connect)")
    sys.exit(0 if mode == "reset" else 1)
if mode == "halfclose":
    req = os.urandom(3000)
    c.sendall(req)
    c.shutdown(socket.SHUT_WR)          # at once: the FIN goes right behind the bytes
    got = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += d
    ok = got == random.Random(req).randbytes(1 << 20)
    print(f"got {len(got)} bytes, {'intact' if ok else 'CORRUPT'}")
    sys.exit(0 if ok else 1)
elif mode == "banner":
    first = c.recv(100)                 # the server speaks first; we send nothing before it
    c.sendall(b"ping\n")
    echo = b""
    while not echo.endswith(b"\n"):
        d = c.recv(100)
        if not d:
            break
        echo += d
    print(f"banner {first!r} echo {echo!r}")
    sys.exit(0 if first == b"banner-first\n" and echo == b"ping\n" else 1)
elif mode == "hold":
    first = c.recv(100)
    print(f"holding after {first!r}", flush=True)
    time.sleep(30)
else:                                   # "reset": a request, then what comes back
    try:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        d = c.recv(100)
        print(f"clean EOF after {d!r}" if d == b"" else f"DATA {d!r}")
        sys.exit(1)
    except (ConnectionResetError, BrokenPipeError) as e:
        print(f"reset after {time.monotonic() - t0:.3f}s ({type(e).__name__})")
PY

bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
bg lanhost halfclose python3 "$TEST_TMP/halfclose.py"
bg lanhost banner socat TCP-LISTEN:9100,bind=192.168.77.10,fork,reuseaddr SYSTEM:'echo banner-first; exec cat'
gcc -O2 -pthread -o "$TEST_TMP/rrload" "$(dirname "$0")/../../tools/bench.d/rrload.c" || fail "cannot compile rrload"
bg lanhost rrserve "$TEST_TMP/rrload" serve 192.168.77.10 9200 2
wait_listen lanhost 80
wait_log "$TEST_TMP/halfclose.log" '^listening'
wait_listen lanhost 9100
wait_listen lanhost 9200
# Port 1 of lanhost: nothing listens. Port 22: the strict mediator's --allow list denies it.
start_server server --keepalive 1 --dead-timeout 3 \
    --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 \
    --forward tcp:0.0.0.0:8090=acme/192.168.77.10:9000 \
    --forward tcp:0.0.0.0:8091=acme/192.168.77.10:1 \
    --forward tcp:0.0.0.0:8092=acme/192.168.77.10:9100 \
    --forward tcp:0.0.0.0:8093=acme/192.168.77.10:9200 \
    --forward tcp:0.0.0.0:8094=strict/192.168.77.10:22 \
    --forward tcp:0.0.0.0:8095=old/192.168.77.10:80 \
    --forward tcp:0.0.0.0:8096=old/192.168.77.10:9100
start_mediator mediator
start_mediator strict --name strict --allow 192.168.77.0/24:80
start_mediator old --name old --no-pipelined-connect
wait_mediator acme
wait_mediator strict
wait_mediator old

capabilities() {
    ctl mediators --json | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["name"] == sys.argv[1]:
        print(",".join(m.get("capabilities") or []))' "$1"
}
end=$((SECONDS + 10))
until [[ "$(capabilities acme)" == *pipelined-connect* ]]; do
    ((SECONDS < end)) || fail "acme never announced pipelined-connect: $(capabilities acme)"
    sleep 0.1
done
[[ "$(capabilities old)" != *pipelined-connect* ]] || fail "--no-pipelined-connect still announced it"

# --- page and download, byte-exact
page=$(lab exec user curl -sS --fail --max-time 10 http://203.0.113.10:8080/index.html) || fail "page through the forward"
assert_eq "hello through a pipelined connect" "$page" "the LAN page"
lab exec user curl -sS --fail --max-time 30 -o "$TEST_TMP/got" http://203.0.113.10:8080/big.bin || fail "20 MB download"
assert_eq "$want" "$(sha256sum <"$TEST_TMP/got" | cut -d' ' -f1)" "SHA-256 of the 20 MB download"

# --- half-close right behind the request
out=$(lab exec user python3 "$TEST_TMP/client.py" halfclose 8090 2>&1) || fail "half-close: $out"
assert_contains "$out" "got 1048576 bytes, intact"
wait_log "$TEST_TMP/halfclose.log" '^request of 3000 bytes, then EOF'

# --- the server speaks first
out=$(lab exec user python3 "$TEST_TMP/client.py" banner 8092 2>&1) || fail "banner: $out"
echo "$out"

# --- the ports carry server-chosen ids (acme) and mediator-chosen ones (old)
port_ids() {
    ctl ports "$1" --json | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'
}
hold_check() {  # hold_check MEDIATOR FORWARD_PORT: one idle connection, then its port id
    local name=$1 port=$2 end=$((SECONDS + 10)) ids=""
    bg user "hold-$name" python3 "$TEST_TMP/client.py" hold "$port"
    wait_log "$TEST_TMP/hold-$name.log" '^holding after'
    until ids=$(port_ids "$name") && [[ -n "$ids" ]]; do
        ((SECONDS < end)) || fail "no port listed for $name"
        sleep 0.1
    done
    echo "$ids"
}
ids=$(hold_check acme 8092)
echo "acme's ports: $ids"
for id in $ids; do ((id > 2147483648)) || fail "acme port $id is not server-chosen (0x80000001 and up)"; done
out=$(lab exec user curl -sS --fail --max-time 10 http://203.0.113.10:8095/index.html) || fail "page through the old mediator"
assert_eq "hello through a pipelined connect" "$out" "the LAN page through a mediator without pipelining"
ids=$(hold_check old 8096)
echo "old's ports: $ids"
for id in $ids; do ((id < 2147483648)) || fail "old port $id is in the server's range"; done

# --- a closed LAN port: reset, quickly, and the refusal in the server's log
out=$(lab exec user python3 "$TEST_TMP/client.py" reset 8091 2>&1) || fail "closed port: $out"
echo "closed port: $out"
assert_contains "$out" "reset" "user connection to a closed LAN port"
secs=$(sed -n 's/^reset after \([0-9.]*\)s.*$/\1/p' <<<"$out")
(($(echo "$secs < 3" | bc))) || fail "the reset took ${secs}s"
wait_log "$TEST_TMP/server.log" 'not relayed: connection refused' 5

# --- a denied destination: reset, logged on both ends
out=$(lab exec user python3 "$TEST_TMP/client.py" reset 8094 2>&1) || fail "denied: $out"
assert_contains "$out" "reset" "user connection to a denied destination"
wait_log "$TEST_TMP/strict.log" 'connect to 192\.168\.77\.10:22 denied by policy' 5
wait_log "$TEST_TMP/server.log" 'not relayed: denied by policy' 5

# --- connections/s with zero failures
kv=$(lab exec user "$TEST_TMP/rrload" rate 203.0.113.10 8093 4 3) || fail "rrload rate: $kv"
echo "$kv" | tr '\n' ' '
echo
ok=$(sed -n 's/^ok=//p' <<<"$kv")
failed=$(sed -n 's/^failed=//p' <<<"$kv")
assert_eq 0 "$failed" "rrload rate failures"
((ok > 100)) || fail "only $ok connections in 3 s"
grep -q 'Fatal error\|precondition' "$TEST_TMP"/*.log && fail "a process crashed"
echo "ok: $TEST_NAME"
