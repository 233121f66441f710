#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The mediator's policy holds through every front end of the server. Mediator
# acme allows only 192.168.77.10:80 and enables neither listen nor redirect:
#   - a tcp: forward to an allowed destination works; one to port 22 is reset for
#     the user, and the server and the mediator both log "denied by policy";
#   - a udp: forward to a destination outside --allow delivers nothing, and the
#     mediator logs the dropped datagram;
#   - a reverse tcp:acme/ forward is refused (listen is off), and the server
#     says why; a reverse udp:acme/ forward passes no unsolicited LAN datagram;
#   - ctl connect (IPv4 and IPv6 outside --allow), ctl listen and ctl redirect
#     fail with "denied by policy" and exit status 1, and the mediator logs each;
#   - with --allow-listen the same reverse forward works, so the refusal above
#     was the policy and nothing else.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

cat >"$TEST_TMP/client.py" <<'PY'
import socket, sys
try:
    c = socket.create_connection(("203.0.113.10", int(sys.argv[1])), timeout=10)
    d = c.recv(100)
    print("clean EOF" if d == b"" else f"DATA {d!r}")
except ConnectionResetError:
    print("reset")
PY
cat >"$TEST_TMP/udp.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
try:
    print("reply", s.recvfrom(100)[0])
except socket.timeout:
    print("no reply")
PY

# shellcheck disable=SC2016
bg lanhost web socat TCP-LISTEN:80,bind=192.168.77.10,reuseaddr,fork SYSTEM:'echo lan web'
bg lanhost ssh socat TCP-LISTEN:22,bind=192.168.77.10,reuseaddr,fork SYSTEM:'echo lan ssh'
bg lanhost dns socat UDP4-RECVFROM:5353,bind=192.168.77.10,fork EXEC:cat
bg wan echo socat TCP-LISTEN:2222,bind=203.0.113.10,reuseaddr,fork EXEC:cat
bg wan uecho socat UDP4-RECVFROM:5000,bind=203.0.113.10,fork EXEC:cat
wait_listen lanhost 80
wait_listen lanhost 22
wait_listen wan 2222

start_server server --keepalive 1 --dead-timeout 3 \
    --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 \
    --forward tcp:0.0.0.0:8022=acme/192.168.77.10:22 \
    --forward udp:0.0.0.0:5353=acme/192.168.77.10:5353 \
    --forward tcp:acme/0.0.0.0:9000=203.0.113.10:2222 \
    --forward udp:acme/0.0.0.0:5000=203.0.113.10:5000
start_mediator mediator --allow 192.168.77.10/32:80
mediator_pid=$(last_bg_pid)
wait_mediator acme

# --- forwards
assert_eq "lan web" "$(lab exec user socat -T3 - TCP:203.0.113.10:8080 </dev/null)" "allowed forward"
out=$(lab exec user python3 "$TEST_TMP/client.py" 8022)
assert_eq "reset" "$out" "user connection through a forward to a denied destination"
wait_log "$TEST_TMP/server.log" 'forward tcp:0\.0\.0\.0:8022=.*not relayed: denied by policy' 5
wait_log "$TEST_TMP/mediator.log" 'connect to 192\.168\.77\.10:22 denied by policy' 5
echo "tcp forward to a denied port: user sees a reset; both ends log it"

out=$(lab exec user python3 "$TEST_TMP/udp.py" 203.0.113.10 5353)
assert_eq "no reply" "$out" "udp forward to a denied destination"
wait_log "$TEST_TMP/mediator.log" 'datagram to 192\.168\.77\.10:5353 denied by policy' 5
echo "udp forward to a denied destination: dropped and logged"

wait_log "$TEST_TMP/server.log" 'forward tcp:acme/0\.0\.0\.0:9000=.*denied by policy' 5
wait_log "$TEST_TMP/mediator.log" 'listen on port [0-9]+ denied by policy' 5
if lab exec lan ss -Htln 'sport = :9000' | grep -q .; then fail "the mediator listens on 9000 without --allow-listen"; fi
echo "reverse tcp forward: refused, listen is off"

wait_listen lan 5000 udp
out=$(lab exec lanhost python3 "$TEST_TMP/udp.py" 192.168.77.2 5000)
assert_eq "no reply" "$out" "unsolicited LAN datagram through a reverse udp forward"
wait_log "$TEST_TMP/mediator.log" 'unsolicited datagram from 192\.168\.77\.10:[0-9]+ dropped by policy' 5
echo "reverse udp forward: unsolicited LAN datagrams dropped and logged"

# --- the admin API / ctl
denied() { # WHAT REGEX_IN_MEDIATOR_LOG CTL_ARGS...
    local what=$1 re=$2 rc=0 err; shift 2
    err=$(ctl "$@" 2>&1 >/dev/null) || rc=$?
    assert_eq 1 "$rc" "$what: exit status"
    assert_contains "$err" "denied by policy" "$what"
    wait_log "$TEST_TMP/mediator.log" "$re" 5
    echo "$what: $err"
}
denied "ctl connect to port 22" 'connect to 192\.168\.77\.10:22 denied' connect acme 0 192.168.77.10:22
denied "ctl connect outside the CIDR" 'connect to 203\.0\.113\.10:2222 denied' connect acme 0 203.0.113.10:2222
denied "ctl connect to IPv6" 'connect to \[fd00:77::10\]:80 denied' connect acme 0 '[fd00:77::10]:80'
id=$(ctl open acme tcp 0.0.0.0:19000 | awk '{print $2}')
denied "ctl listen" 'listen on port [0-9]+ denied by policy' listen acme "$id"
denied "ctl redirect" 'redirect of .* denied by policy' redirect acme 0.0.0.0:19001
ctl close acme "$id" >/dev/null

# --- the same reverse forward with --allow-listen
# By the process group this test started: a search by command line finds other labs' mediators too.
kill -TERM -- "-$mediator_pid" 2>/dev/null || true
start_mediator mediator2 --allow 192.168.77.10/32:80 --allow-listen
wait_log "$TEST_TMP/server.log" "mediator 'acme' listens on 0\\.0\\.0\\.0:9000" 10
assert_eq "via reverse" "$(lab exec lanhost socat -T3 - TCP:192.168.77.2:9000 <<<"via reverse")" "reverse forward with --allow-listen"
echo "with --allow-listen the reverse forward works"
echo "ok: $TEST_NAME"
