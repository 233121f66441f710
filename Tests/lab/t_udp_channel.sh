#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A udp: forward's datagrams take the session's UDP channel to the service port number (203.0.113.10:7000/udp)
# when the gateway lets UDP out, the TCP channel when it does not, and the UDP channel again once it
# does (docs/protocol.md §9); garbage sent to the service port over UDP changes nothing and is counted.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# client.py HOST PORT: datagrams of several sizes (1,400 and 8,000 bytes among them), one at a time,
# each must come back identical; then a burst of 20. A datagram lost while a path changes is sent
# again (UDP may lose; §9.9 only promises no duplicates), at most 5 times.
cat >"$TEST_TMP/client.py" <<'PY'
import os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.connect((host, port))
def exchange(batch):
    want = set(batch)
    for attempt in range(5):
        for d in want:
            s.send(d)
        try:
            while want:
                got = s.recv(65536)
                assert got in batch, f"a {len(got)}-byte datagram came back that was never sent"
                want.discard(got)
        except TimeoutError:
            continue
        return
    raise SystemExit(f"{len(want)} datagrams never came back")
for n in (1, 100, 1400, 8000, 33):
    exchange([os.urandom(n)])
exchange([os.urandom(200) for _ in range(20)])
print("25 datagrams echoed intact")
PY

# garbage.py HOST PORT SESSION: random bytes, and well-formed headers naming SESSION with bad tags.
cat >"$TEST_TMP/garbage.py" <<'PY'
import os, socket, struct, sys
host, port, session = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(30):
    s.sendto(os.urandom(1 + i * 7), (host, port))
for i in range(30):
    header = struct.pack(">BBHQQ", 1, 0, 1, session, 1_000_000 + i)
    s.sendto(header + os.urandom(40), (host, port))
print("sent 60 garbage datagrams")
PY

bg lanhost echo_lan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
wait_log "$TEST_TMP/echo_lan.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --udp-keepalive 0.5 \
    --forward udp:0.0.0.0:5353=acme/192.168.77.10:5353
wait_listen wan 7000 udp
wait_listen wan 5353 udp
start_mediator mediator --allow 192.168.77.10:5353 --udp-keepalive 0.5
wait_mediator acme
wait_path udp 10
echo "UDP channel up: $(ctl mediators | grep 'datagrams via')"

# 1. Over the UDP channel.
before=$(field delivered)
out=$(lab exec user python3 "$TEST_TMP/client.py" 203.0.113.10 5353 2>&1) || fail "over the UDP channel: $out"
assert_contains "$out" "25 datagrams echoed intact"
after=$(field delivered)
((after - before >= 25)) || fail "the UDP channel delivered $((after - before)) datagrams, not the 25 replies"
assert_eq 0 "$(field tcpWhileUp)" "datagrams sent on TCP while the channel was up"
echo "over udp: 25 datagrams echoed, the channel delivered $((after - before))"

# 2. The gateway drops UDP to the service port: the session notices and falls back to TCP.
lab exec gw nft add rule inet postern_lab block ip daddr 203.0.113.10 udp dport 7000 drop comment '"udp-channel-test"'
wait_path tcp 10
wait_mediator_off_udp
before=$(field delivered)
out=$(lab exec user python3 "$TEST_TMP/client.py" 203.0.113.10 5353 2>&1) || fail "over the TCP fallback: $out"
assert_contains "$out" "25 datagrams echoed intact"
assert_eq "$before" "$(field delivered)" "datagrams the UDP channel delivered while blocked"
echo "blocked: ctl says tcp; 25 datagrams echoed over the TCP channel"

# 3. Unblocked: back to UDP within a few keepalives.
for h in $(lab exec gw nft -a list chain inet postern_lab block | sed -n 's/.*"udp-channel-test".*# handle \([0-9]*\)/\1/p'); do
    lab exec gw nft delete rule inet postern_lab block handle "$h"
done
t0=$SECONDS
wait_path udp 10
echo "unblocked: back to udp after about $((SECONDS - t0)) s"
before=$(field delivered)
out=$(lab exec user python3 "$TEST_TMP/client.py" 203.0.113.10 5353 2>&1) || fail "over the UDP channel again: $out"
assert_contains "$out" "25 datagrams echoed intact"
((($(field delivered) - before) >= 25)) || fail "the UDP channel did not carry the replies after coming back"

# 4. Garbage to the service port over UDP: counted, nothing reaches the LAN, the forward still works.
lines=$(wc -l <"$TEST_TMP/echo_lan.log")
session=$(ctl mediators --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['session'])")
lab exec user python3 "$TEST_TMP/garbage.py" 203.0.113.10 7000 "$session"
# The server counts them as it reads them, which on a loaded machine can take longer than a fixed
# pause: poll the counters (all 60 must be counted), then look at the LAN.
t0=$EPOCHREALTIME end=$((SECONDS + 10))
while unrouted=$(field unrouted) forged=$(field forged) stray=$(field stray) \
    && ((unrouted + stray + forged < 60 && SECONDS < end)); do
    sleep 0.2
done
((unrouted + stray + forged >= 60)) || fail "60 garbage datagrams, but unrouted $unrouted + stray $stray + forged $forged"
echo "garbage counted $(bc <<<"$EPOCHREALTIME - $t0") s after it was sent"
assert_eq "$lines" "$(wc -l <"$TEST_TMP/echo_lan.log")" "lines in the LAN echo's log after the garbage"
[[ $(field path) == udp ]] || fail "the garbage moved the session off its UDP channel"
out=$(lab exec user python3 "$TEST_TMP/client.py" 203.0.113.10 5353 2>&1) || fail "after the garbage: $out"
assert_contains "$out" "25 datagrams echoed intact"
echo "garbage: unrouted $unrouted, stray $stray, forged $forged; the forward still works over udp"
ctl mediators | grep 'datagrams via'
echo "ok: $TEST_NAME"
