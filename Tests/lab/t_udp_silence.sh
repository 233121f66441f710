#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The UDP channel with its default keepalive (15 s) when the gateway stops passing it (docs/protocol.md
# §9.7, "Silence"), through udp:0.0.0.0:9999=acme/192.168.77.10:9999 to a UDP echo in lanhost:
#  - gw drops the mediator's UDP to the service port while the channel is up: the server's next
#    datagram finds the mediator silent, its probe goes unanswered, and within seconds both ends are
#    down and the echoes come back over the TCP channel (before: not until the 45 s dead timeout, a
#    minute without answers); `ctl mediators` says tcp and the logs say why;
#  - the rule removed: back on the UDP channel;
#  - gw's UDP conntrack timeout at 4 s, idle 12 s (the NAT mapping gone, the keepalive not due yet):
#    a user's datagrams are answered again within seconds, with no action of anyone.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# until_answered LIMIT: one datagram from user every 0.5 s (each waiting 1 s for its echo) until three
# in a row come back; prints the seconds that took. Fails past LIMIT seconds.
cat >"$TEST_TMP/probe.py" <<'PY'
import os, socket, sys, time
limit = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
start, streak = time.time(), 0
while time.time() - start < limit:
    d = os.urandom(64)
    s.sendto(d, ("203.0.113.10", 9999))
    try:
        while True:
            got, _ = s.recvfrom(65536)
            if got == d:
                break
        streak += 1
        if streak == 3:
            print(f"{time.time() - start:.1f}")
            sys.exit(0)
    except socket.timeout:
        streak = 0
    time.sleep(0.5)
print(f"no answers for {limit} s")
sys.exit(1)
PY
until_answered() { lab exec user python3 "$TEST_TMP/probe.py" "$1"; }

bg lanhost echo python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 9999
wait_log "$TEST_TMP/echo.log" listening
start_server server --forward udp:0.0.0.0:9999=acme/192.168.77.10:9999
start_mediator mediator --allow 192.168.77.10:9999
wait_mediator acme
wait_path udp 10
until_answered 10 >/dev/null || fail "no echo through the UDP channel"

# 1. The gateway drops the mediator's UDP to the service port.
lab exec gw nft add rule inet postern_lab block udp dport 7000 drop comment '"udp-silence-test"'
took=$(until_answered 20) || fail "UDP blocked: $took (the channel was not given up within 20 s)"
echo "UDP blocked: answered again over the TCP channel after $took s"
wait_path tcp 5
wait_log "$TEST_TMP/server.log" 'UDP channel 1 of session 1 is down \(a keepalive unanswered for 3000 ms, nothing heard since\)'
wait_log "$TEST_TMP/mediator.log" 'UDP channel 1 of session 1 is down \(the peer hears nothing from this end\)'
grep -h 'is down' "$TEST_TMP/server.log" "$TEST_TMP/mediator.log" | sed 's/^.*\] /  /'

# 2. Unblocked: back on the UDP channel (within a keepalive interval and a bit).
for h in $(lab exec gw nft -a list chain inet postern_lab block | sed -n 's/.*"udp-silence-test".*# handle \([0-9]*\)/\1/p'); do
    lab exec gw nft delete rule inet postern_lab block handle "$h"
done
wait_path udp 25
before=$(field delivered)
until_answered 10 >/dev/null || fail "no echo after unblocking"
(($(field delivered) > before)) || fail "the echoes did not come over the UDP channel after unblocking"
echo "unblocked: datagrams via udp again"

# 3. A NAT mapping that times out between keepalives.
lab conntrack-timeout udp 4
sleep 12 # idle on purpose: longer than the gateway's timeout, shorter than the keepalive interval
took=$(until_answered 15) || fail "after the NAT mapping timed out: $took"
echo "mapping timed out after 4 s idle: answered again after $took s ($(field path))"
echo "ok: $TEST_NAME"
