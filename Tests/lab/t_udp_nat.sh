#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The UDP channel through the gateway's NAT, with the gateway's UDP conntrack timeouts at 10 s and
# --udp-keepalive 3 on both ends (docs/protocol.md §9.8; README, "UDP channel"):
#  - after 60 s idle the udp: forward still answers, over the UDP channel, from the same public port;
#  - `conntrack -D` drops the NAT mapping while the old public port is taken, so the mediator's next
#    datagram leaves from a new one (checked with conntrack -L): the forward answers again within 2
#    keepalives and the server counts one migration;
#  - real channel datagrams captured on wan (tcpdump) and replayed from `user` — as-is, with their
#    original source, and from user's own address — reach no LAN host, do not move the session, and
#    are counted (replayed; the server's own datagrams sent back to it: forged or replayed); copies with a bad
#    UDP checksum crash nothing (DatagramChecksumFilter).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup
KEEPALIVE=3

# ask.py HOST PORT WITHIN: one datagram every 0.25 s until one comes back; prints the seconds taken.
cat >"$TEST_TMP/ask.py" <<'PY'
import os, socket, sys, time
host, port, within = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.25)
s.connect((host, port))
t0 = time.monotonic()
while time.monotonic() - t0 < within:
    d = os.urandom(64)
    s.send(d)
    try:
        while True:
            if s.recv(65536) == d:
                print(f"answered after {time.monotonic() - t0:.2f} s")
                sys.exit(0)
    except TimeoutError:
        pass
sys.exit(f"no answer within {within} s")
PY

# remap.py PORT: take PORT on the gateway's public address (a socket bound there and a datagram sent
# to the service port makes the conntrack entry), then delete the mediator's mapping, so the NAT must
# give the mediator's next datagram another public port. Holds the port a while.
cat >"$TEST_TMP/remap.py" <<'PY'
import socket, subprocess, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("203.0.113.1", port))
subprocess.run(["conntrack", "-D", "-p", "udp", "--orig-src", "192.168.77.2", "--orig-port-dst", "7000"],
               check=True, capture_output=True)
s.sendto(b"the old port is taken", ("203.0.113.10", 7000))
print("mapping deleted, old port taken", flush=True)
time.sleep(30)
PY

# replay.py PCAP: the channel datagrams of PCAP (Ethernet), unfragmented ones only, sent to
# 203.0.113.10:7000. Those from the mediator's public address: as-is (raw IP, original source and
# port) and from user's own address. The capture on a veth holds partial (offloaded) UDP checksums:
# the as-is copies get the checksum they had on the wire, and each is also sent once more with the
# capture's bad checksum, which the server's kernel must drop without waking it up to nothing.
# Those from the server: sent back to it from user's address. Prints the two counts.
cat >"$TEST_TMP/replay.py" <<'PY'
import socket, struct, sys
def fold(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return s
def with_checksum(packet, ihl):
    udp = bytearray(packet[ihl:])
    udp[6:8] = b"\0\0"
    pseudo = packet[12:20] + struct.pack(">BBH", 0, 17, len(udp))
    c = 0xFFFF - fold(pseudo + bytes(udp))
    udp[6:8] = struct.pack(">H", c or 0xFFFF)
    return packet[:ihl] + bytes(udp)
data = open(sys.argv[1], "rb").read()
off, to_server, from_server = 24, [], []
while off + 16 <= len(data):
    incl = struct.unpack("<I", data[off + 8:off + 12])[0]
    frame = data[off + 16:off + 16 + incl]
    off += 16 + incl
    ip = frame[14:]
    if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17 or struct.unpack(">H", ip[6:8])[0] & 0x3FFF:
        continue
    ihl = (ip[0] & 15) * 4
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    sport, dport = struct.unpack(">HH", ip[ihl:ihl + 4])
    packet = ip[:struct.unpack(">H", ip[2:4])[0]]
    if len(packet) < ihl + 8 + 37 or packet[ihl + 8] != 1:
        continue  # not a channel datagram (§9.2), such as remap.py's
    if src == "203.0.113.1" and dst == "203.0.113.10" and dport == 7000:
        to_server.append((packet, ihl))
    elif src == "203.0.113.10" and sport == 7000:
        from_server.append(packet[ihl + 8:])
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for p, ihl in to_server:
    raw.sendto(p, ("203.0.113.10", 0))  # the capture's checksum, as a bad-checksum datagram
    raw.sendto(with_checksum(p, ihl), ("203.0.113.10", 0))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p, ihl in to_server:
    u.sendto(p[ihl + 8:], ("203.0.113.10", 7000))
for p in from_server:
    u.sendto(p, ("203.0.113.10", 7000))
print(f"{len(to_server)} {len(from_server)}")
PY

# public_port: the gateway's public source port for the mediator's UDP channel (conntrack -L).
public_port() {
    lab exec gw conntrack -L -p udp --orig-src 192.168.77.2 --orig-port-dst 7000 2>/dev/null \
        | sed -n 's/.*src=203\.0\.113\.10 dst=203\.0\.113\.1 sport=7000 dport=\([0-9]*\).*/\1/p' | head -1
}

lab conntrack-timeout udp 10
bg wan capture tcpdump -i eth0 -n -U -w "$TEST_TMP/channel.pcap" udp port 7000
capture_pid=$(last_bg_pid)
wait_log "$TEST_TMP/capture.log" 'listening on'
bg lanhost echo_lan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
wait_log "$TEST_TMP/echo_lan.log" '^listening'
start_server server --udp-keepalive "$KEEPALIVE" --forward udp:0.0.0.0:5353=acme/192.168.77.10:5353
wait_listen wan 5353 udp
start_mediator mediator --allow 192.168.77.10:5353 --udp-keepalive "$KEEPALIVE"
wait_mediator acme
end=$((SECONDS + 10))
until [[ $(field path) == udp ]]; do ((SECONDS < end)) || fail "no UDP channel: $(ctl mediators)"; sleep 0.2; done
lab exec user python3 "$TEST_TMP/ask.py" 203.0.113.10 5353 5 >/dev/null || fail "the forward does not answer"
port=$(public_port)
[[ -n $port ]] || fail "no conntrack entry for the channel: $(lab exec gw conntrack -L -p udp 2>&1)"
echo "channel up from public port $port; gateway UDP timeouts: $(lab exec gw sysctl -n net.netfilter.nf_conntrack_udp_timeout) s"

# 1. 60 s idle, with a 10 s conntrack timeout.
sleep 60
before=$(field delivered)
out=$(lab exec user python3 "$TEST_TMP/ask.py" 203.0.113.10 5353 2) || fail "after 60 s idle: $out"
(($(field delivered) > before)) || fail "after 60 s idle the answer did not come over the UDP channel"
assert_eq udp "$(field path)" "path after 60 s idle"
assert_eq 0 "$(field tcpWhileUp)" "datagrams on TCP while the channel was up"
assert_eq "$port" "$(public_port)" "the public port after 60 s idle (the keepalives kept the mapping)"
assert_eq 0 "$(field migrations)" "migrations after 60 s idle"
echo "after 60 s idle: $out, over udp, same public port $port"

# 2. The mapping dropped: a new public port, answers again within 2 keepalives.
bg gw remap python3 "$TEST_TMP/remap.py" "$port"
wait_log "$TEST_TMP/remap.log" 'mapping deleted'
out=$(lab exec user python3 "$TEST_TMP/ask.py" 203.0.113.10 5353 $((2 * KEEPALIVE))) || fail "after conntrack -D: $out"
new=$(public_port)
[[ -n $new && $new != "$port" ]] || fail "the public port did not change: was $port, now '$new'"
end=$((SECONDS + 5))
until (($(field migrations) >= 1)); do ((SECONDS < end)) || fail "the server counted no migration"; sleep 0.2; done
echo "after conntrack -D: $out (within 2 keepalives of $KEEPALIVE s), public port $port -> $new, migrations $(field migrations)"

# 3. Captured channel datagrams replayed from user.
kill -INT -- "-$capture_pid"
# tcpdump has written its last packet once it has exited (a fixed pause assumed it is that fast).
end=$((SECONDS + 10))
while kill -0 -- "-$capture_pid" 2>/dev/null; do
    ((SECONDS < end)) || fail "tcpdump still runs 10 s after SIGINT"
    sleep 0.1
done
lines=$(wc -l <"$TEST_TMP/echo_lan.log")
replayed=$(field replayed) forged=$(field forged) migrations=$(field migrations)
read -r m2s s2m < <(lab exec user python3 "$TEST_TMP/replay.py" "$TEST_TMP/channel.pcap")
((m2s >= 10 && s2m >= 10)) || fail "captured only $m2s mediator and $s2m server datagrams"
# The server counts the replays as it reads them, which on a loaded machine can take longer than a
# fixed pause: poll until all are counted, then check that none of them had an effect.
# The server's own datagrams fail to open under the other direction's key (forged), unless their
# counter is already behind the replay window, which is checked first (replayed).
t0=$EPOCHREALTIME end=$((SECONDS + 10))
while dr=$(($(field replayed) - replayed)) df=$(($(field forged) - forged)) \
    && ! ((dr >= 2 * m2s && dr + df >= 2 * m2s + s2m)) && ((SECONDS < end)); do
    sleep 0.2
done
((dr >= 2 * m2s)) || fail "$((2 * m2s)) replays of the mediator's datagrams, but replayed grew by $dr"
((dr + df >= 2 * m2s + s2m)) || fail "$((2 * m2s + s2m)) datagrams replayed, but replayed grew by $dr and forged by $df"
echo "replays counted $(bc <<<"$EPOCHREALTIME - $t0") s after the replay ended"
assert_eq "$lines" "$(wc -l <"$TEST_TMP/echo_lan.log")" "lines in the LAN echo's log after the replays"
assert_eq "$migrations" "$(field migrations)" "migrations after the replays"
assert_eq udp "$(field path)" "path after the replays"
out=$(lab exec user python3 "$TEST_TMP/ask.py" 203.0.113.10 5353 2) || fail "after the replays: $out"
assert_eq "$new" "$(public_port)" "the mediator's public port after the replays"
echo "replays: $m2s captured mediator datagrams twice (as-is and from 203.0.113.20): replayed +$dr; $s2m server datagrams sent back: forged +$df; no migration (still $(field migrations)), the forward answers ($out)"
ctl mediators | grep 'datagrams via'
echo "ok: $TEST_NAME"
