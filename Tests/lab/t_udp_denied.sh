#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# What the acceptance test reads from `ctl status` for datagrams:
#  - a udp: forward to a destination the mediator's policy denies: each dropped datagram is in the
#    forward's DENIED (policyDenials), reported by the mediator with DENIED (docs/protocol.md §6.5),
#    thinned to one frame a second per port; a TCP denial is still counted as before;
#  - datagrams carried over the UDP channel count in the mediator's IN/OUT (payload bytes).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# send.py HOST PORT N [SOURCE_PORT]: N datagrams of 100 bytes from one socket, no replies expected,
# paced (1 ms apart) so that none is lost on the way (UDP may lose; DENIED counts what the mediator
# dropped, not what a full socket buffer lost before it).
cat >"$TEST_TMP/send.py" <<'PY'
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if len(sys.argv) > 4:
    s.bind(("0.0.0.0", int(sys.argv[4])))
for i in range(n):
    s.sendto(bytes([i % 256]) * 100, (host, port))
    time.sleep(0.001)
print(f"sent {n}")
PY
# echo.py HOST PORT: 20 datagrams of 500 bytes, one at a time, each echoed back (resent on loss).
cat >"$TEST_TMP/echo.py" <<'PY'
import os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.connect((host, port))
for i in range(20):
    d = os.urandom(500)
    for attempt in range(5):
        s.send(d)
        try:
            if s.recv(65536) == d:
                break
        except TimeoutError:
            pass
    else:
        raise SystemExit(f"datagram {i} never came back")
print("20 datagrams echoed")
PY

# forward SPEC KEY: one field of a forward in `ctl status --json`.
forward() {
    ctl status --json | python3 -c "
import json,sys
print(next(f['$2'] for f in json.load(sys.stdin)['forwards'] if f['spec'].startswith('$1')))"
}
# mediator KEY: one field of acme in `ctl status --json`.
mediator() {
    ctl status --json | python3 -c "import json,sys; print(json.load(sys.stdin)['mediators'][0]['$1'])"
}
wait_denied() {
    local spec=$1 want=$2 end=$((SECONDS + 10)) got
    until got=$(forward "$spec" policyDenials 2>/dev/null) && [[ $got == "$want" ]]; do
        ((SECONDS < end)) || fail "$spec: DENIED is ${got:-?}, not $want, after 10 s: $(ctl status)"
        sleep 0.2
    done
}

bg lanhost echo_lan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
wait_log "$TEST_TMP/echo_lan.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --udp-keepalive 0.5 \
    --forward udp:0.0.0.0:5353=acme/192.168.77.10:5353 \
    --forward udp:0.0.0.0:5354=acme/192.168.77.10:5354 \
    --forward tcp:0.0.0.0:8022=acme/192.168.77.10:22
wait_listen wan 5354 udp
start_mediator mediator --allow 192.168.77.10:5353 --udp-keepalive 0.5
wait_mediator acme
end=$((SECONDS + 10))
until [[ $(mediator datagramPath 2>/dev/null) == udp ]]; do
    ((SECONDS < end)) || fail "the UDP channel did not come up: $(ctl mediators)"
    sleep 0.2
done
echo "UDP channel up"

# 1. IN/OUT count what the UDP channel carried: 20 × 500 bytes each way at least (payload, so
#    not far above it: the keepalives and the sealing are not counted).
in0=$(mediator bytesIn) out0=$(mediator bytesOut) sent0=$(mediator udpSent)
out=$(lab exec user python3 "$TEST_TMP/echo.py" 203.0.113.10 5353 2>&1) || fail "echo over the UDP channel: $out"
assert_contains "$out" "20 datagrams echoed"
din=$(($(mediator bytesIn) - in0)) dout=$(($(mediator bytesOut) - out0)) dsent=$(($(mediator udpSent) - sent0))
((dsent >= 20)) || fail "the UDP channel sent $dsent datagrams, not the 20 requests"
((dout >= 10000 && dout <= 50000)) || fail "OUT grew by $dout bytes for 20 × 500 payload bytes over the UDP channel"
((din >= 10000 && din <= 50000)) || fail "IN grew by $din bytes for 20 × 500 payload bytes over the UDP channel"
assert_eq 0 "$(forward udp:0.0.0.0:5353 policyDenials)" "DENIED of the allowed forward"
echo "over the UDP channel: IN +$din, OUT +$dout bytes"

# 2. A flood to a denied destination: every datagram is in DENIED, in at most a few frames. The first
#    opens the flow (datagrams beyond its backlog would be dropped by the server while it opens).
lab exec user python3 "$TEST_TMP/send.py" 203.0.113.10 5354 1 40000 >/dev/null
wait_denied udp:0.0.0.0:5354 1
out=$(lab exec user python3 "$TEST_TMP/send.py" 203.0.113.10 5354 299 40000)
assert_eq "sent 299" "$out" "the user's flood"
wait_denied udp:0.0.0.0:5354 300
wait_log "$TEST_TMP/mediator.log" 'datagram to 192\.168\.77\.10:5354 denied by policy' 5
notices=$(grep -c 'datagram to 192\.168\.77\.10:5354 denied by policy' "$TEST_TMP/mediator.log")
((notices <= 4)) || fail "the mediator logged $notices lines for 300 denied datagrams"
echo "udp: 300 datagrams to a denied destination, DENIED shows 300"
# Again from another sender, a second flow: counted too.
lab exec user python3 "$TEST_TMP/send.py" 203.0.113.10 5354 7 >/dev/null
wait_denied udp:0.0.0.0:5354 307

# 3. A TCP denial is counted as before.
lab exec user socat -T2 - TCP:203.0.113.10:8022 </dev/null >/dev/null 2>&1 || true
wait_denied tcp:0.0.0.0:8022 1
assert_eq 307 "$(forward udp:0.0.0.0:5354 policyDenials)" "DENIED of the udp forward after the TCP denial"
echo "tcp: the denied connection counted, the udp forward's count unchanged"
ctl status | grep -E 'DENIED|5354|8022'
echo "ok: $TEST_NAME"
