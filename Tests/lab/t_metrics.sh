#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Operations (issue 14): /metrics and ctl status against a running server.
#  - a paced transfer through tcp:0.0.0.0:8080=acme/192.168.77.10:9000: the forward's byte counter,
#    scraped from --metrics while the connection is still open and again after it closed, is within
#    5% of what the client sent (open connections count, not only closed ones);
#  - an iperf3 run through tcp:0.0.0.0:5201=acme/192.168.77.10:5201: the counter rises while it runs
#    and ends within 5% of iperf3's own figure;
#  - 10 datagrams of 1000 bytes through udp:0.0.0.0:5353=acme/192.168.77.10:5353 (an echo): 10000
#    bytes counted each way;
#  - ctl status lists the mediator (connected) and both forwards (listening) with their counters;
#  - /metrics on the admin port needs the token (401 without, 401 with a wrong one, 200 with it);
#    the tokenless --metrics port serves nothing but GET /metrics.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

bg lanhost sink socat -u TCP-LISTEN:9000,bind=192.168.77.10,fork,reuseaddr OPEN:/dev/null
bg lanhost iperf iperf3 -s -B 192.168.77.10 -p 5201
bg lanhost echo python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
wait_listen lanhost 9000
wait_listen lanhost 5201
start_server server --keepalive 1 --metrics 203.0.113.10:9100 \
    --forward tcp:0.0.0.0:8080=acme/192.168.77.10:9000 --forward tcp:0.0.0.0:5201=acme/192.168.77.10:5201 \
    --forward udp:0.0.0.0:5353=acme/192.168.77.10:5353
wait_listen wan 9100
grep -q "readable from the network without a token" "$TEST_TMP/server.log" \
    || fail "no warning for --metrics on a non-loopback address"

# Before the mediator connects, the forwards wait for it.
status=$(ctl status)
echo "$status"
assert_contains "$status" "waiting: mediator not connected" "forward state before the mediator"

start_mediator mediator
wait_mediator acme
metrics=http://203.0.113.10:9100/metrics

# 1. Paced transfer: 8 MiB/s for 6 s; the checks are in metrics_sender.py.
lab exec user python3 "$LAB_REPO/Tests/lab/metrics_sender.py" 203.0.113.10 8080 "$metrics" \
    "tcp:0.0.0.0:8080=acme/192.168.77.10:9000" 6 | tee "$TEST_TMP/sender.out" \
    || fail "paced transfer: $(cat "$TEST_TMP/sender.out")"
grep -q "^after the transfer" "$TEST_TMP/sender.out" || fail "the sender did not finish its checks"

# 2. iperf3: scrape while it runs, then compare with its own count.
bytes_of() { # forward direction -> the counter's value in the metrics endpoint's answer
    lab exec wan curl -sS --max-time 5 "$metrics" \
        | awk -v f="forward=\"$1\"" -v d="direction=\"$2\"" \
            'index($0, "postern_forward_bytes_total{") == 1 && index($0, f) && index($0, d) { print $NF }'
}
iperf_fwd="tcp:0.0.0.0:5201=acme/192.168.77.10:5201"
before=$(bytes_of "$iperf_fwd" to_mediator)
assert_eq 0 "$before" "iperf3 forward's counter before the run"
setsid "$LAB_TOOL" exec user iperf3 -c 203.0.113.10 -p 5201 -t 5 -J >"$TEST_TMP/iperf.json" 2>"$TEST_TMP/iperf.log" </dev/null &
iperf_pid=$!
_LAB_PIDS+=("$iperf_pid")
sleep 3
during=$(bytes_of "$iperf_fwd" to_mediator)
echo "iperf3 forward during the run: $during bytes to the mediator"
[[ "$during" =~ ^[0-9.e+]+$ ]] && python3 -c "import sys; sys.exit(0 if float('$during') > 1e6 else 1)" \
    || fail "the counter did not rise while iperf3 ran: '$during'"
wait "$iperf_pid" || fail "iperf3 failed: $(cat "$TEST_TMP/iperf.log")"
sleep 1
after=$(bytes_of "$iperf_fwd" to_mediator)
figures=$(python3 -c "import json; e=json.load(open('$TEST_TMP/iperf.json'))['end']; print(int(e['sum_sent']['bytes']), int(e['sum_received']['bytes']))")
# shellcheck disable=SC2086 # two numbers
python3 - $figures "$after" "$during" <<'PY' || fail "iperf3: metrics and iperf3 disagree"
import sys
sent, received, after, during = (float(x) for x in sys.argv[1:])
# What iperf3's server received all passed through the forward; what its client wrote last may
# still have been in its socket when the test ended.
print(f"iperf3 sent {int(sent)} bytes, its server received {int(received)}; metrics say {int(after)} "
      f"(ratio to received {after / received:.4f}, to sent {after / sent:.4f})")
assert during < after, "the counter during the run must be below the final one"
assert after >= received * 0.999, "fewer bytes counted than iperf3's server received"
assert abs(after / received - 1) <= 0.05, "off by more than 5%"
PY

# UDP: 10 datagrams of 1000 bytes to the echo and back: 10000 bytes each way, one flow.
udp_fwd="udp:0.0.0.0:5353=acme/192.168.77.10:5353"
lab exec user python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("203.0.113.10", 5353))
for i in range(10):
    s.send(bytes([i]) * 1000)
    assert s.recv(2000) == bytes([i]) * 1000
' || fail "UDP echo through the forward"
assert_eq 10000 "$(bytes_of "$udp_fwd" to_mediator)" "UDP forward bytes to the mediator"
assert_eq 10000 "$(bytes_of "$udp_fwd" from_mediator)" "UDP forward bytes from the mediator"
echo "$(ctl status)" | grep -Eq '^udp:0\.0\.0\.0:5353=acme/192\.168\.77\.10:5353 +listening +1 +1 ' \
    || fail "ctl status: the UDP forward should show 1 flow open, 1 in total"
echo "udp forward: 10000 bytes each way counted, 1 flow"

# 3. ctl status: the mediator and both forwards, with counters.
status=$(ctl status)
echo "$status"
assert_contains "$status" "postern " "status header"
echo "$status" | grep -Eq '^acme +connected' || fail "ctl status does not list acme as connected"
echo "$status" | grep -Eq '^tcp:0\.0\.0\.0:8080=acme/192\.168\.77\.10:9000 +listening +0 +1 ' \
    || fail "ctl status does not list the paced forward as listening with 1 connection in total"
echo "$status" | grep -Eq '^tcp:0\.0\.0\.0:5201=acme/192\.168\.77\.10:5201 +listening ' \
    || fail "ctl status does not list the iperf3 forward"
json=$(ctl status --json)
total=$(echo "$json" | python3 -c "import json,sys; s=json.load(sys.stdin); print([f for f in s['forwards'] if f['spec'].endswith(':9000')][0]['bytesToMediator'])")
echo "ctl status --json: paced forward carried $total bytes to the mediator"

# 4. The admin port's /metrics needs the token.
token=$(cat "$POSTERN_STATE_DIR/admin.token")
code() { lab exec wan curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
assert_eq 401 "$(code http://127.0.0.1:7070/metrics)" "admin /metrics without the token"
assert_eq 401 "$(code -H 'Authorization: Bearer wrong-token-wrong-token-wrong-token' http://127.0.0.1:7070/metrics)" \
    "admin /metrics with a wrong token"
assert_eq 200 "$(code -H "Authorization: Bearer $token" http://127.0.0.1:7070/metrics)" "admin /metrics with the token"
body=$(lab exec wan curl -sS --max-time 5 -H "Authorization: Bearer $token" http://127.0.0.1:7070/metrics)
for name in postern_mediator_connected postern_mediator_sessions_total postern_mediator_bytes_total \
    postern_mediator_datagram_path postern_forward_connections_total postern_forward_bytes_total \
    postern_handshake_seconds_bucket postern_forward_connect_seconds_bucket process_resident_memory_bytes process_open_fds; do
    assert_contains "$body" "$name" "admin /metrics"
done
assert_contains "$body" 'postern_mediator_connected{mediator="acme"} 1' "acme connected in the metrics"
assert_contains "$body" 'postern_mediator_keepalive_rtt_seconds{mediator="acme",channel="tcp"}' "the TCP keepalive round trip"
# The tokenless port: GET /metrics only.
assert_eq 404 "$(code http://203.0.113.10:9100/v1/status)" "the metrics port serves no admin route"
assert_eq 405 "$(code -X POST http://203.0.113.10:9100/metrics)" "POST to the metrics port"
echo "ok: $TEST_NAME"
