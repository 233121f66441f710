#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Failed connects reach the remote side as such:
#  - a forward to a closed LAN port resets the user's connection (no data);
#  - `ctl connect` to a closed port fails with "refused" and exit status 1;
#  - a mediator with --allow 192.168.77.0/24:80 refuses a connect to port 22
#    with "denied by policy" (and logs it), but allows port 80.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

cat >"$TEST_TMP/client.py" <<'PY'
import socket, sys
try:
    c = socket.create_connection(("203.0.113.10", int(sys.argv[1])), timeout=10)
    d = c.recv(100)
    print(f"clean EOF after {d!r}" if d == b"" else f"DATA {d!r}")
    sys.exit(1)
except ConnectionResetError:
    print("reset")
except ConnectionRefusedError:
    print("refused")
PY

bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP"
wait_listen lanhost 80
# Port 1 of lanhost: nothing listens (the kernel answers the mediator with RST).
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8081=acme/192.168.77.10:1
start_mediator mediator
start_mediator strict --name strict --allow 192.168.77.0/24:80
wait_mediator acme
wait_mediator strict

# --- forward to a closed port
out=$(lab exec user python3 "$TEST_TMP/client.py" 8081 2>&1) || fail "forward to a closed port: $out"
assert_contains "$out" "reset" "user connection through a forward to a closed port"
wait_log "$TEST_TMP/server.log" 'not relayed: connection refused' 5

# --- ctl connect to a closed port
rc=0
err=$(ctl connect acme 0 192.168.77.10:1 2>&1 >/dev/null) || rc=$?
echo "ctl connect to closed port: rc=$rc: $err"
assert_eq 1 "$rc" "exit status of a refused ctl connect"
assert_contains "$err" "error: connection refused" "ctl error code"
assert_contains "$err" "Connection refused" "ctl error message"
# ...and the same port is fine once something listens: the LAN web server.
out=$(ctl connect acme 0 192.168.77.10:80) || fail "ctl connect to 192.168.77.10:80 failed"
[[ "$out" =~ ^port\ [0-9]+\ local\ 192\.168\.77\.2:[0-9]+$ ]] || fail "unexpected ctl connect output '$out'"

# --- policy
rc=0
err=$(ctl connect strict 0 192.168.77.10:22 2>&1 >/dev/null) || rc=$?
echo "ctl connect denied: rc=$rc: $err"
assert_eq 1 "$rc" "exit status of a denied connect"
assert_contains "$err" "denied by policy" "policy error"
wait_log "$TEST_TMP/strict.log" 'connect to 192\.168\.77\.10:22 denied by policy' 5
rc=0
err=$(ctl connect strict 0 203.0.113.10:7070 2>&1 >/dev/null) || rc=$?
assert_eq 1 "$rc" "exit status of a denied connect outside the CIDR"
assert_contains "$err" "denied by policy" "policy error outside the CIDR"
out=$(ctl connect strict 0 192.168.77.10:80) || fail "allowed connect (port 80) was refused"
echo "allowed: $out"
echo "ok: $TEST_NAME"
