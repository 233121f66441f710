#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# UDP forwards carry datagrams both ways, each intact and on its own:
#  - udp:0.0.0.0:5353=acme/192.168.77.10:5353: user -> server -> echo in lanhost;
#  - udp:acme/0.0.0.0:5000=203.0.113.10:5000: lanhost -> 192.168.77.2:5000 on
#    the mediator -> echo in wan; replies come from 192.168.77.2:5000.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# client.py HOST PORT: several datagrams of different sizes, one at a time,
# each must come back identical and from HOST:PORT. Then a burst of 20.
cat >"$TEST_TMP/client.py" <<'PY'
import os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((host, port))          # only replies from host:port are delivered
for n in (1, 100, 512, 1400, 4000, 8000, 0, 33):
    d = os.urandom(n)
    s.send(d)
    got = s.recv(65536)
    assert got == d, f"{n}-byte datagram came back as {len(got)} bytes"
    print(f"{n} bytes echoed intact")
burst = [os.urandom(200) for _ in range(20)]
for d in burst:
    s.send(d)
back = set()
for _ in burst:
    back.add(s.recv(65536))
assert back == set(burst), "burst: some datagrams differ"
print("burst of 20 echoed intact")
PY

bg lanhost echo_lan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
bg wan echo_wan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 203.0.113.10 5000
wait_log "$TEST_TMP/echo_lan.log" '^listening'
wait_log "$TEST_TMP/echo_wan.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 \
    --forward udp:0.0.0.0:5353=acme/192.168.77.10:5353 \
    --forward udp:acme/0.0.0.0:5000=203.0.113.10:5000
wait_listen wan 5353 udp
# The policy allows only the forward's LAN target: replies of the reverse forward go to
# lanhost's ephemeral port, which passes because lanhost sent to the port first.
start_mediator mediator --allow 192.168.77.10:5353 --allow-listen
wait_mediator acme
wait_listen lan 5000 udp

out=$(lab exec user python3 "$TEST_TMP/client.py" 203.0.113.10 5353 2>&1) || fail "user -> lanhost: $out"
echo "user -> lanhost: $(tail -n 1 <<<"$out")"
assert_contains "$out" "burst of 20 echoed intact"
# lanhost saw them coming from the mediator's host.
grep -q 'bytes from 192\.168\.77\.2:' "$TEST_TMP/echo_lan.log" || fail "lanhost echo saw no datagram from 192.168.77.2"

out=$(lab exec lanhost python3 "$TEST_TMP/client.py" 192.168.77.2 5000 2>&1) || fail "lanhost -> wan: $out"
echo "lanhost -> wan: $(tail -n 1 <<<"$out")"
assert_contains "$out" "burst of 20 echoed intact"
grep -q 'bytes from 203\.0\.113\.10:' "$TEST_TMP/echo_wan.log" || fail "wan echo saw no datagram from the server"
echo "ok: $TEST_NAME"
