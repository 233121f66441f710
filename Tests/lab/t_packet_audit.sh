#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# What a stranger's audit of the packet-level half found (session 22), each checked the way it failed:
#  - a REDIRECT port takes every LAN sender's datagrams: a burst of 3 x 150 LAN senders' 1,200-byte
#    datagrams must not overflow the mediator's socket (its kernel drop counter stays 0; with the
#    default 208 KiB buffer it dropped 5-8% of each burst);
#  - SOCKS5 UDP ASSOCIATE: the first datagram to an IPv6 destination (which opens the mediator's
#    IPv6 port) is answered; it used to be dropped, so a client saw its first query lost;
#  - `postern replay` of a capture whose forward's target the mediator's --allow denies: each flow
#    is reported as never reaching the responder, within seconds, not after --timeout per flow;
#  - a user spraying a `udp:` forward from 300 new source ports at a mediator at its --max-ports:
#    a few log lines on each end, not one per datagram (there were ~300 on each);
#  - a mediator with --tun and this server without --tun: both logs and `ctl mediators` say why no
#    TUN mode comes up (before: nothing anywhere);
#  - `postern replay` whose tunnel goes away midway (the mediator killed): the flows done so far are
#    reported (this side's checks; the responder's come only at the end), the rest as not finished,
#    and the error is in strerror's words; exit 2.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup
CAPTURES="$LAB_REPO/captures/third-party"

# echo.py ADDR PORT: a UDP echo (IPv6 socket, dual stack); echo4.py ADDR PORT: an IPv4 one.
cat >"$TEST_TMP/echo6.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    d, p = s.recvfrom(65536)
    s.sendto(d, p)
PY
bg lanhost echo6 python3 "$TEST_TMP/echo6.py" :: 9998
bg wan echo4 python3 "$LAB_REPO/Tests/lab/udp_echo.py" 127.0.0.1 5000
wait_log "$TEST_TMP/echo6.log" listening
wait_log "$TEST_TMP/echo4.log" listening

start_server server --socks 0.0.0.0:1080=acme --socks-no-auth \
    --forward udp:acme/0.0.0.0:5000=127.0.0.1:5000 \
    --forward tcp:0.0.0.0:8000=acme/192.168.77.10:9000 --forward udp:0.0.0.0:8000=acme/192.168.77.10:9000 \
    --forward tcp:0.0.0.0:8001=acme/192.168.77.10:9001 \
    --forward tcp:0.0.0.0:8100=acme/192.168.77.10:9100 --forward udp:0.0.0.0:8100=acme/192.168.77.10:9100 \
    --forward udp:0.0.0.0:5353=acme/192.168.77.10:9998
start_mediator mediator --allow 192.168.77.10:9000,9001,9998 --allow '[fd00:77::/64]:9998' --allow-redirect
MEDIATOR_PGID=$(last_bg_pid)
wait_mediator acme
wait_log "$TEST_TMP/server.log" "receives datagrams on 0.0.0.0:5000 by redirect"

# --- 1. A burst of LAN senders on the redirected port: the mediator's socket drops nothing.
cat >"$TEST_TMP/burst.py" <<'PY'
import os, select, socket, sys, time
host, port, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
back = 0
for r in range(rounds):
    for s in socks:
        s.sendto(os.urandom(1200), (host, port))
    end, pending = time.time() + 3, set(socks)
    while pending and time.time() < end:
        ready, _, _ = select.select(list(pending), [], [], 0.2)
        for s in ready:
            s.recv(65536)
            pending.discard(s)
            back += 1
print(f"{n * rounds} sent, {back} came back")
PY
out=$(lab exec lanhost python3 "$TEST_TMP/burst.py" 192.168.77.2 5000 150 3)
skmem=$(lab exec lan ss -uamnH 'sport = :5000' | tr -d '\n')
drops=$(sed -n 's/.*,d\([0-9]*\)).*/\1/p' <<<"$skmem")
[[ -n "$drops" ]] || fail "no socket memory line for the mediator's port 5000: $skmem"
assert_eq 0 "$drops" "datagrams the mediator's redirected socket dropped for a full buffer ($out; $skmem)"
echo "redirect burst: $out; the mediator's socket dropped $drops ($(grep -o 'rb[0-9]*' <<<"$skmem"))"

# --- 2. SOCKS5 UDP ASSOCIATE: the first datagram to an IPv6 destination is answered, sent once.
cat >"$TEST_TMP/assoc.py" <<'PY'
import ipaddress, os, socket, struct, sys
def rx(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed")
        b += c
    return b
def addr(host, port):
    ip = ipaddress.ip_address(host)
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed + struct.pack(">H", port)
c = socket.create_connection(("203.0.113.10", 1080), timeout=5)
c.sendall(b"\x05\x01\x00")
assert rx(c, 2) == b"\x05\x00"
c.sendall(b"\x05\x03\x00" + addr("0.0.0.0", 0))
head = rx(c, 4)
assert head[1] == 0 and head[3] == 1, head
rx(c, 4)
relay = ("203.0.113.10", struct.unpack(">H", rx(c, 2))[0])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
for host in sys.argv[1:]:
    header = b"\x00\x00\x00" + addr(host, 9998)
    data = os.urandom(100)
    u.sendto(header + data, relay)  # once: no retry
    try:
        got, _ = u.recvfrom(65536)
        print(host, "answered" if got == header + data else "corrupted")
    except socket.timeout:
        print(host, "lost")
PY
out=$(lab exec user python3 "$TEST_TMP/assoc.py" fd00:77::10 fd00:77::10 192.168.77.10)
echo "$out" | sed 's/^/UDP ASSOCIATE: /'
assert_eq "fd00:77::10 answered
fd00:77::10 answered
192.168.77.10 answered" "$out" "UDP ASSOCIATE, each datagram sent once"

# --- 3. Replay through a forward whose target the mediator's --allow denies (192.168.77.10:9100).
bg lanhost responder-denied "$POSTERN_BIN" replay "$CAPTURES/web-http-refused.pcap" --respond 192.168.77.10:9100 \
    --control 192.168.77.10:9001
DENIED_PGID=$(last_bg_pid)
wait_log "$TEST_TMP/responder-denied.log" "listening on"
t0=$SECONDS
rc=0
lab exec user timeout 60 "$POSTERN_BIN" replay "$CAPTURES/web-http-refused.pcap" --to 203.0.113.10:8100 \
    --control 203.0.113.10:8001 --quiet >"$TEST_TMP/denied.out" 2>&1 || rc=$?
took=$((SECONDS - t0))
cat "$TEST_TMP/denied.out"
assert_eq 1 "$rc" "replay of denied flows: exit status"
n=$(grep -c 'mismatch (responder side: the connection never reached it: the forward ended it first' "$TEST_TMP/denied.out" || true)
assert_eq 2 "$n" "flows reported as never reaching the responder"
((took < 15)) || fail "replay of 2 denied flows took $took s (each waited out --timeout 20)"
wait_log "$TEST_TMP/mediator.log" 'connect to 192\.168\.77\.10:9100 denied by policy'
echo "denied: both flows reported as never reaching the responder, in $took s"
# Its control port (9001) is the next responder's.
kill -TERM -- "-$DENIED_PGID" 2>/dev/null || true
wait "$DENIED_PGID" 2>/dev/null || true
# The same with UDP flows (3 RADIUS exchanges): nothing says a datagram was dropped, so each flow is
# given up after 3 s instead of --timeout (20 s) each.
bg lanhost responder-denied-udp "$POSTERN_BIN" replay "$CAPTURES/radius-sll.pcap" --respond 192.168.77.10:9100 \
    --control 192.168.77.10:9001
DENIED_PGID=$(last_bg_pid)
wait_log "$TEST_TMP/responder-denied-udp.log" "listening on"
t0=$SECONDS
rc=0
lab exec user timeout 60 "$POSTERN_BIN" replay "$CAPTURES/radius-sll.pcap" --to 203.0.113.10:8100 \
    --control 203.0.113.10:8001 --quiet >"$TEST_TMP/denied-udp.out" 2>&1 || rc=$?
took=$((SECONDS - t0))
cat "$TEST_TMP/denied-udp.out"
assert_eq 1 "$rc" "replay of denied UDP flows: exit status"
n=$(grep -c 'mismatch (responder side: no datagram of it arrived within 3 s: the mediator.s --allow may deny its target' \
    "$TEST_TMP/denied-udp.out" || true)
assert_eq 3 "$n" "UDP flows reported as never reaching the responder"
((took < 25)) || fail "replay of 3 denied UDP flows took $took s"
echo "denied UDP: the 3 flows reported as never reaching the responder, in $took s"
kill -TERM -- "-$DENIED_PGID" 2>/dev/null || true
wait "$DENIED_PGID" 2>/dev/null || true

# --- 4. Replay whose tunnel goes away midway: recorded timing spreads 7 DNS flows over ~33 s; the
# mediator is killed once the first is done.
bg lanhost responder "$POSTERN_BIN" replay "$CAPTURES/dns-udp-queries.pcap" --respond 192.168.77.10:9000 --timing recorded
wait_log "$TEST_TMP/responder.log" "listening on"
bg user initiator "$POSTERN_BIN" replay "$CAPTURES/dns-udp-queries.pcap" --to 203.0.113.10:8000 --timing recorded
INITIATOR_PGID=$(last_bg_pid)
wait_log "$TEST_TMP/initiator.log" 'replay: [1-6]/7 flows done' 30
kill -KILL -- "-$MEDIATOR_PGID"
end=$((SECONDS + 20))
while kill -0 "$INITIATOR_PGID" 2>/dev/null; do
    ((SECONDS < end)) || fail "the replay still runs 20 s after its tunnel went away"
    sleep 0.2
done
rc=0
wait "$INITIATOR_PGID" || rc=$?
grep -v '^replay: ' "$TEST_TMP/initiator.log"
assert_eq 2 "$rc" "replay whose tunnel went away: exit status"
# The responder's checks come at the end, so flow 1 shows this side's check and says the other's is missing.
grep -Eq '^flow 1 udp .*responder side: no result: the control connection ended\): responder 1/1 packets' "$TEST_TMP/initiator.log" \
    || fail "the flow done before the tunnel went away is not reported with this side's check"
grep -q 'not finished: the replay stopped' "$TEST_TMP/initiator.log" || fail "the flows not done are not reported as such"
grep -Eq 'postern replay: control connection (failed|closed).* after [1-6] of 7 flows: the tunnel, its forward or the responder went away' \
    "$TEST_TMP/initiator.log" || fail "no clear reason for the stop"
if grep -q 'descriptor' "$TEST_TMP/initiator.log"; then fail "NIO's error text in the report"; fi
echo "tunnel gone midway: exit 2, the flows so far reported"

# --- 5. A spray of new UDP senders at a mediator holding its --max-ports: the refusals are counted,
# and logged a few times, on both ends.
start_mediator mediator2 --allow 192.168.77.10:9998 --max-ports 4
wait_log "$TEST_TMP/server.log" "mediator 'acme' connected from .*\(session 2\)" 20
cat >"$TEST_TMP/spray.py" <<'PY'
import socket, time
for i in range(300):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"spray %d" % i, ("203.0.113.10", 5353))
    s.close()
    time.sleep(0.003)
PY
lab exec user python3 "$TEST_TMP/spray.py"
wait_log "$TEST_TMP/mediator2.log" 'refusing requests: this session already holds 4 ports \(limit 4\); 1 refused so far'
end=$((SECONDS + 10))
until ctl forwards --json | python3 -c '
import json, sys
f = [f for f in json.load(sys.stdin) if f["spec"].startswith("udp:0.0.0.0:5353")][0]
sys.exit(0 if f["errors"] >= 290 else 1)' 2>/dev/null; do
    ((SECONDS < end)) || fail "the forward did not count the refused senders: $(ctl forwards)"
    sleep 0.2
done
server_lines=$(grep -c 'cannot open a UDP port' "$TEST_TMP/server.log" || true)
mediator_lines=$(grep -c 'refusing requests' "$TEST_TMP/mediator2.log" || true)
((server_lines >= 1 && server_lines <= 3)) || fail "the server logged $server_lines lines for the refused senders"
((mediator_lines == 1)) || fail "the mediator logged $mediator_lines lines for the refused requests"
echo "spray of 300 senders at --max-ports 4: $server_lines server log lines, $mediator_lines mediator line"

# --- 6. A mediator with --tun, this server without: said on both ends and in ctl mediators.
bg lanhost tunny "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name tunny --secret-file "$TEST_TMP/secret" \
    --tun 192.168.77.50/24
wait_mediator tunny
wait_log "$TEST_TMP/server.log" "mediator 'tunny' offers TUN mode \(it runs with --tun\), but this server runs without --tun"
wait_log "$TEST_TMP/tunny.log" 'TUN mode \(--tun\) was offered to the server 5 s ago and it has not asked for it' 15
out=$(ctl mediators | sed -n '/^tunny /,/^[a-z]/p')
assert_contains "$out" "tun - not started: this server runs without --tun" "ctl mediators"
echo "TUN offered to a server without --tun: both logs and ctl mediators say so"
echo "ok: $TEST_NAME"
