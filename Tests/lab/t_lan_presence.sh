#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# TUN mode with the raw LAN presence (mediator --lan-presence raw, issue 11), through the real NAT,
# with net.ipv4.ip_forward=0 and no proxy settings on lan (the mediator's host): no tun device, no
# route, no proxy neighbour, no sysctl; the mediator answers ARP for 192.168.77.50 with lan's MAC and
# sends the remote side's packets as Ethernet frames itself. From user (routing through the server,
# as in t_tun): ping, a 20 MB curl (SHA-256 equal) and iperf3 to lanhost; ping of a host behind the
# LAN's gateway (the gateway's MAC is resolved); lanhost's neighbour table shows 192.168.77.50 at
# lan's MAC; a forged ARP reply and frames for other addresses change and reach nothing; a mediator
# without CAP_NET_RAW says so; SIGKILL of the mediator leaves lan exactly as before, and so does the
# whole run (links, addresses, routes, proxy neighbours, every IPv4/IPv6 conf and neigh sysctl).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mediator() {
    ctl mediators --json | python3 -c "import json,sys
m = next((m for m in json.load(sys.stdin) if m['name'] == sys.argv[1]), {})
print($2)" "$1"
}
tun() { mediator "${2:-acme}" "m.get('tun', {}).get('$1', '')"; }
wait_tun_status() {
    local end=$((SECONDS + $3))
    until [[ $(tun status "$1" 2>/dev/null) =~ $2 ]]; do
        ((SECONDS < end)) || fail "TUN status of $1 did not match '$2' within $3 s: $(ctl mediators 2>&1)"
        sleep 0.2
    done
}
# forge MODE: lanhost speaks raw Ethernet at lan (forge.py below); prints its verdict.
forge() { lab exec lanhost python3 "$TEST_TMP/forge.py" "$1" "$LAN_MAC"; }

# The operator's side is the README's for TUN mode; the mediator's host gets nothing.
tun_route_via_server
lab exec user ip route add 10.99.0.0/16 via 203.0.113.10
# A host behind the LAN's gateway: an address on gw's loopback, reached through gw (192.168.77.1).
lab exec gw ip addr add 10.99.0.1/32 dev lo
lab exec lan sysctl -qw net.ipv4.ip_forward=0
assert_eq "0" "$(lab exec lan sysctl -n net.ipv4.conf.eth0.proxy_arp)" "proxy_arp on lan's eth0"
LAN_MAC=$(lab exec lan cat /sys/class/net/eth0/address)
mkdir -p "$TEST_TMP/www"
head -c 20M /dev/urandom >"$TEST_TMP/www/big.bin"
WANT_SUM=$(sha256sum "$TEST_TMP/www/big.bin" | cut -d' ' -f1)
bg lanhost http python3 -m http.server 8080 --bind 192.168.77.10 --directory "$TEST_TMP/www"
bg lanhost iperf iperf3 -s -B 192.168.77.10 -p 5201
wait_tcp lanhost 192.168.77.10 8080

cat >"$TEST_TMP/forge.py" <<'PY'
import socket, struct, sys, time
mode, lan = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
me = s.getsockname()[4]
def arp(op, smac, sip, tmac, tip, dst):
    return (dst + smac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
            + smac + socket.inet_aton(sip) + tmac + socket.inet_aton(tip))
def replies(ip, seconds):
    n, end = 0, time.monotonic() + seconds
    s.settimeout(0.1)
    while time.monotonic() < end:
        try:
            f = s.recv(2048)
        except socket.timeout:
            continue
        if f[20:22] == b"\x00\x02" and f[28:32] == socket.inet_aton(ip):
            n += 1
    return n
if mode == "forge":
    # Unsolicited: "192.168.77.10 is at 02:de:ad:be:ef:01", to lan's MAC, about the address.
    bogus = bytes.fromhex("02deadbeef01")
    for _ in range(5):
        s.send(arp(2, bogus, "192.168.77.10", lan, "192.168.77.50", lan))
    print("forged 5 replies")
elif mode == "other":
    # ARP for 192.168.77.51 and UDP to it at lan's MAC: nobody answers for it, nothing is carried.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0,
                     socket.inet_aton("192.168.77.10"), socket.inet_aton("192.168.77.51"))
    ip = ip + struct.pack("!HHHH", 4000, 4001, 8, 0)
    for _ in range(20):
        s.send(arp(1, me, "192.168.77.10", b"\0" * 6, "192.168.77.51", b"\xff" * 6))
        s.send(lan + me + b"\x08\x00" + ip)
    print("answers for 192.168.77.51:", replies("192.168.77.51", 2))
elif mode == "flood":
    # 5,000 ARP requests for the address as fast as this host sends them: the mediator lives on.
    for _ in range(5000):
        s.send(arp(1, me, "192.168.77.10", b"\0" * 6, "192.168.77.50", b"\xff" * 6))
    print("flooded")
PY

# Settled addresses first (lib.sh settled_snapshot): two equal snapshots half a second apart, none tentative.
settled_snapshot lan

start_server server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
server_pid=$(last_bg_pid)
start_mediator mediator --tun 192.168.77.50/24 --tun-allow 10.99.0.0/16 --lan-presence raw --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_mediator acme
wait_tun_status acme '^up$' 15
wait_log "$TEST_TMP/mediator.log" "TUN mode up \(raw LAN presence\): remote side 192.168.77.50 at $LAN_MAC on eth0, gateway 192.168.77.1"
echo "raw LAN presence up: $(grep -o 'TUN mode up.*' "$TEST_TMP/mediator.log" | head -1)"
lab exec lan ip link show ptm-acme >/dev/null 2>&1 && fail "a tun device exists in lan with --lan-presence raw"
assert_as_before "lan, with the raw LAN presence up," lan
echo "lan while up: links, addresses, routes, proxy neighbours and sysctls as before (ip_forward 0, no ptm-acme)"

# 1. Traffic both ways over the presence.
check_traffic() {
    local out sum
    out=$(lab exec user ping -c 3 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "$1: user cannot ping 192.168.77.10: $out"
    assert_contains "$out" "3 received" "$1: user pings lanhost"
    sum=$(lab exec user curl -sS --max-time 60 http://192.168.77.10:8080/big.bin | sha256sum | cut -d' ' -f1) ||
        fail "$1: curl of the 20 MB file failed"
    assert_eq "$WANT_SUM" "$sum" "$1: sha256 of the 20 MB file fetched by user"
    echo "$1: ping and a 20 MB curl (sha256 ok)"
}
check_traffic "raw presence"
out=$(lab exec lanhost ping -c 3 -i 0.2 -W 2 192.168.77.50 2>&1) || fail "lanhost cannot ping 192.168.77.50: $out"
assert_contains "$out" "3 received" "lanhost pings the remote side"
out=$(lab exec user iperf3 -c 192.168.77.10 -p 5201 -t 3 -f m 2>&1) || fail "iperf3 TCP: $out"
echo "iperf3 TCP user -> lanhost: $(grep -E 'receiver' <<<"$out" | tail -1)"
out=$(lab exec user iperf3 -c 192.168.77.10 -p 5201 -t 3 -f m -R 2>&1) || fail "iperf3 -R TCP: $out"
echo "iperf3 TCP lanhost -> user: $(grep -E 'receiver' <<<"$out" | tail -1)"
neigh=$(lab exec lanhost ip neigh show 192.168.77.50)
assert_contains "$neigh" "lladdr $LAN_MAC" "lanhost's neighbour entry for 192.168.77.50"
echo "lanhost: $neigh"

# 2. Off the LAN: the packet goes to the gateway's MAC (learned by ARP), the answer comes back.
out=$(lab exec user ping -c 3 -i 0.2 -W 2 10.99.0.1 2>&1) || fail "user cannot ping 10.99.0.1 behind the gateway: $out"
assert_contains "$out" "3 received" "user pings a host behind the LAN's gateway"
echo "gateway hop: user pings 10.99.0.1 through 192.168.77.1"

# 3. An address nobody has: after ARP gives up, user hears "host unreachable" from lan's address.
out=$(lab exec user ping -c 1 -W 6 192.168.77.99 2>&1) && fail "a ping to an absent host got an answer: $out"
assert_contains "$out" "From 192.168.77.2 icmp_seq=1 Destination Host Unreachable" "ping of an absent LAN address"
echo "absent host: $(grep -m1 'Unreachable' <<<"$out")"

# 4. Abuse: a forged ARP reply does not move lanhost's traffic; ARP and IP for another address get
# no answer and never reach the presence (the kernel filter); a flood of ARP requests is survived.
out=$(forge forge)
echo "forged: $out"
out=$(lab exec user ping -c 3 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "user -> lanhost after a forged ARP reply: $out"
assert_contains "$out" "3 received" "user pings lanhost after a forged ARP reply"
out=$(forge other)
assert_contains "$out" "answers for 192.168.77.51: 0" "ARP for an address the presence does not own"
grep -E 'TUN mode dropped .*(destination|malformed)' "$TEST_TMP/mediator.log" &&
    fail "frames for 192.168.77.51 reached the mediator's packet policy: the kernel filter let them in"
forge flood
out=$(lab exec user ping -c 3 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "user -> lanhost after an ARP flood: $out"
kill -0 "$mediator_pid" 2>/dev/null || fail "the mediator died"
echo "abuse: forged reply ignored, 192.168.77.51 unanswered and unseen, ARP flood survived"

# 5. No CAP_NET_RAW: said at start and in the refusal the server shows.
kill -TERM -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
wait_log "$TEST_TMP/mediator.log" 'raw LAN presence: ARP answered [1-9]'
echo "mediator counters: $(grep -o 'raw LAN presence: ARP.*' "$TEST_TMP/mediator.log")"
counters=$(grep -o 'raw LAN presence: ARP.*' "$TEST_TMP/mediator.log")
grep -qE 'ARP answered [0-9]+, learned [0-9]+, ignored [1-9]' <<<"$counters" ||
    fail "the forged ARP replies were not counted as ignored: $counters"
# The frames to 192.168.77.51 never reached the process: the kernel's filter kept them out.
assert_contains "$counters" "frames ignored 0," "frames the presence saw that were not for it"
bg lan mediator_noraw capsh --drop=cap_net_raw -- -c \
    "exec '$POSTERN_BIN' mediator --server 203.0.113.10:7000 --name acme --secret-file '$TEST_TMP/secret' --tun 192.168.77.50/24 --lan-presence raw"
noraw_pid=$(last_bg_pid)
wait_log "$TEST_TMP/mediator_noraw.log" 'TUN mode with --lan-presence raw needs CAP_NET_RAW, which this process lacks'
wait_tun_status acme '^refused: .*the raw LAN presence needs CAP_NET_RAW' 15
echo "no CAP_NET_RAW: $(tun status)"
kill -TERM -- "-$noraw_pid"
wait "$noraw_pid" 2>/dev/null || true

# 6. SIGKILL: nothing to undo, lan is as before; a new mediator works at once.
start_mediator mediator2 --tun 192.168.77.50/24 --tun-allow 10.99.0.0/16 --lan-presence raw --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_log "$TEST_TMP/mediator2.log" 'TUN mode up \(raw LAN presence\)' 20
kill -KILL -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
assert_as_before "lan, after SIGKILL," lan
echo "after SIGKILL: lan as before"
start_mediator mediator3 --tun 192.168.77.50/24 --tun-allow 10.99.0.0/16 --lan-presence raw --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_log "$TEST_TMP/mediator3.log" 'TUN mode up \(raw LAN presence\)' 20
wait_tun_status acme '^up$' 15
out=$(lab exec user ping -c 3 -i 0.2 -W 3 192.168.77.10 2>&1) || fail "after restart: $out"
echo "restart: ping ok"

kill -TERM -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
kill -TERM -- "-$server_pid"
wait "$server_pid" 2>/dev/null || true
assert_as_before "lan" lan
echo "after stop: lan's links, addresses, routes, proxy neighbours and sysctls byte-for-byte as before"
echo "ok: $TEST_NAME"
