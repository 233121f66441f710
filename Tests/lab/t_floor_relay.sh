#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# tools/bench's floor (tools/bench.d/floorrelay.c) keeps TCP's semantics, or it measures nothing:
#  A) floorcheck.py on gw's loopback, both modes (splice, copy): half-close each way with every byte,
#     resets passed on both ways, a refused target reset, a user that stops reading (bounded RSS,
#     then every byte of 256 MiB);
#  B) through the lab as tools/bench's floor1 runs it (user -> relay in gw -> lanhost), with socat:
#     1 MiB up, then the user's FIN; lanhost's sha256sum answers only after it, and the hash
#     matches; and a lanhost that resets makes the user's read fail with a reset.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
lab_setup

D="$LAB_REPO/tools/bench.d"
gcc -O2 -pthread -o "$TEST_TMP/floorrelay" "$D/floorrelay.c" || fail "floorrelay does not compile"

# A) the semantics, on loopback in gw.
out=$(lab exec gw timeout 200 python3 "$D/floorcheck.py" "$TEST_TMP/floorrelay" splice copy 2>&1) || fail "floorcheck: $out"
assert_contains "$out" "floorcheck splice: ok" "floorcheck splice"
assert_contains "$out" "floorcheck copy: ok" "floorcheck copy"

# B) through the lab: half-close, then a reset.
bg lanhost hash socat TCP-LISTEN:9000,bind=192.168.77.10,fork,reuseaddr EXEC:sha256sum
cat >"$TEST_TMP/resetter.py" <<'PY'
import socket, struct
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.77.10", 9001)); s.listen(4)
while True:
    c, _ = s.accept()
    c.recv(10)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
PY
bg lanhost resetter python3 "$TEST_TMP/resetter.py"
bg gw relay-hash "$TEST_TMP/floorrelay" 203.0.113.1 55000 192.168.77.10 9000
bg gw relay-reset "$TEST_TMP/floorrelay" -m copy 203.0.113.1 55001 192.168.77.10 9001
wait_tcp lan 192.168.77.10 9000
wait_tcp user 203.0.113.1 55000

head -c 1048576 /dev/urandom >"$TEST_TMP/up"
want=$(sha256sum <"$TEST_TMP/up" | cut -d' ' -f1)
got=$(lab exec user socat -t 20 -T 30 - TCP:203.0.113.1:55000 <"$TEST_TMP/up" | cut -d' ' -f1)
assert_eq "$want" "$got" "1 MiB and its FIN through the relay, then lanhost's answer"

# shellcheck disable=SC2016 # the script belongs to the inner python
r=$(lab exec user timeout 20 python3 -c '
import socket
s = socket.create_connection(("203.0.113.1", 55001), timeout=10)
s.sendall(b"ping")
try:
    print("read", s.recv(10))
except ConnectionResetError:
    print("reset")
' 2>&1)
assert_eq "reset" "$r" "lanhost's reset passed on to the user"
echo "floor relay: semantics ok (both modes), half-close and reset through gw ok"
