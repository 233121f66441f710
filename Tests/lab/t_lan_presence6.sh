#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The raw LAN presence's IPv6 half (mediator --tun 192.168.77.50/24 --tun fd00:77::50/64
# --lan-presence raw, issue 11), through the real NAT: no tun device, no route, no proxy NDP entry,
# no sysctl on lan (IPv6 forwarding stays 0 everywhere); the mediator answers neighbour
# solicitations for fd00:77::50 with lan's MAC and sends the remote side's IPv6 packets as Ethernet
# frames itself, resolving next hops with its own solicitations. From user (routing both LAN
# prefixes through the server, as in t_tun6): ping6 and a curl -6 of a 5 MB file (SHA-256 equal) to
# lanhost, IPv4 beside it; lanhost pings fd00:77::50 and its neighbour table shows it at lan's MAC;
# a host behind the LAN's IPv6 gateway answers; an absent address gets "address unreachable" from
# lan's address. Abuse: an unsolicited forged advertisement moves nothing, a solicitation with hop
# limit 254 or for another address gets no answer. lan's links, addresses, routes, proxy entries and
# every IPv4/IPv6 conf and neigh sysctl are the same before, while up and after.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

tun() { ctl mediators --json | python3 -c "import json,sys
m = next((m for m in json.load(sys.stdin) if m['name'] == 'acme'), {})
print(m.get('tun', {}).get('$1', ''))"; }
wait_tun_up() {
    local end=$((SECONDS + $1))
    until [[ $(tun status 2>/dev/null) == up ]]; do
        ((SECONDS < end)) || fail "TUN mode not up within $1 s: $(ctl mediators 2>&1)"
        sleep 0.2
    done
}
# forge MODE: lanhost speaks raw Ethernet at lan (forge6.py below); prints its verdict.
forge() { lab exec lanhost python3 "$TEST_TMP/forge6.py" "$1" "$LAN_MAC"; }

tun_route_via_server
lab exec user ip -6 route add fd00:77::/64 via 2001:db8:113::10
lab exec user ip -6 route add fd00:99::/64 via 2001:db8:113::10
lab exec wan sysctl -qw net.ipv6.conf.all.forwarding=1
lab exec wan nft -f - <<'NFT'
table ip6 postern_tun6 {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "pts-*" masquerade
    }
}
NFT
# A host behind the LAN's IPv6 gateway (fd00:77::1, lan's default route): an address on gw's loopback.
lab exec gw ip -6 addr add fd00:99::1/128 dev lo
LAN_MAC=$(lab exec lan cat /sys/class/net/eth0/address)
mkdir -p "$TEST_TMP/www"
head -c 5M /dev/urandom >"$TEST_TMP/www/file.bin"
WANT_SUM=$(sha256sum "$TEST_TMP/www/file.bin" | cut -d' ' -f1)
bg lanhost http python3 -m http.server 8080 --bind fd00:77::10 --directory "$TEST_TMP/www"
wait_tcp lanhost fd00:77::10 8080

cat >"$TEST_TMP/forge6.py" <<'PY'
import socket, struct, sys, time
mode, lan = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
s.bind(("eth0", 0))
me = s.getsockname()[4]
a6 = lambda t: socket.inet_pton(socket.AF_INET6, t)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def nd(kind, src, dst, target, flags, opt_type, mac, hop=255):
    icmp = bytes([kind, 0, 0, 0, flags, 0, 0, 0]) + a6(target) + bytes([opt_type, 1]) + mac
    c = csum(a6(src) + a6(dst) + struct.pack("!I", len(icmp)) + b"\0\0\0\x3a" + icmp)
    icmp = icmp[:2] + struct.pack("!H", c) + icmp[4:]
    return struct.pack("!IHBB", 0x60000000, len(icmp), 58, hop) + a6(src) + a6(dst) + icmp
def answers(target, seconds):
    n, end = 0, time.monotonic() + seconds
    s.settimeout(0.1)
    while time.monotonic() < end:
        try:
            f = s.recv(2048)
        except socket.timeout:
            continue
        if len(f) >= 78 and f[20] == 58 and f[54] == 136 and f[62:78] == a6(target):
            n += 1
    return n
def sn(t):
    b = a6(t)
    return "ff02::1:ff%02x:%02x%02x" % (b[13], b[14], b[15])
def group(t):
    return b"\x33\x33" + a6(sn(t))[12:]
if mode == "forge":
    # Unsolicited (no S flag, nobody asked): "fd00:77::10 is at 02:de:ad:be:ef:01", to lan's MAC.
    bogus = bytes.fromhex("02deadbeef01")
    for flags in (0x20, 0x60):
        for _ in range(3):
            s.send(lan + me + b"\x86\xdd" + nd(136, "fd00:77::10", "fd00:77::50", "fd00:77::10", flags, 2, bogus))
    print("forged 6 advertisements")
elif mode == "hoplimit":
    # A solicitation for the address with hop limit 254 (as if routed): RFC 4861 says discard.
    for _ in range(5):
        s.send(group("fd00:77::50") + me + b"\x86\xdd" + nd(135, "fd00:77::10", sn("fd00:77::50"), "fd00:77::50", 0, 1, me, hop=254))
    print("answers to hop limit 254:", answers("fd00:77::50", 2))
elif mode == "other":
    for _ in range(5):
        s.send(group("fd00:77::51") + me + b"\x86\xdd" + nd(135, "fd00:77::10", sn("fd00:77::51"), "fd00:77::51", 0, 1, me))
    print("answers for fd00:77::51:", answers("fd00:77::51", 2))
elif mode == "flood":
    for _ in range(5000):
        s.send(group("fd00:77::50") + me + b"\x86\xdd" + nd(135, "fd00:77::10", sn("fd00:77::50"), "fd00:77::50", 0, 1, me))
    print("flooded")
PY

settled_snapshot lan
assert_contains "$before" "net.ipv6.conf.all.forwarding = 0" "lan's IPv6 forwarding before"
assert_contains "$before" "net.ipv4.ip_forward = 0" "lan's IPv4 forwarding before"

start_server server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
server_pid=$(last_bg_pid)
start_mediator mediator --tun 192.168.77.50/24 --tun fd00:77::50/64 --tun-allow fd00:99::/64 --lan-presence raw --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_mediator acme
wait_tun_up 15
wait_log "$TEST_TMP/mediator.log" "TUN mode up \(raw LAN presence\): remote side 192.168.77.50 and fd00:77::50 at $LAN_MAC on eth0, gateway 192.168.77.1 and fd00:77::1"
echo "raw LAN presence up: $(grep -o 'TUN mode up.*' "$TEST_TMP/mediator.log" | head -1)"
lab exec lan ip link show ptm-acme >/dev/null 2>&1 && fail "a tun device exists in lan with --lan-presence raw"
assert_as_before "lan, with the raw LAN presence up," lan
echo "lan while up: as before (IPv4 and IPv6 forwarding 0, no proxy NDP, no ptm-acme)"

# 1. IPv6 both ways over the presence, IPv4 beside it.
check_traffic() {
    local out sum
    out=$(lab exec user ping -6 -c 3 -i 0.2 -W 2 fd00:77::10 2>&1) || fail "$1: user cannot ping6 fd00:77::10: $out"
    assert_contains "$out" "3 received" "$1: user pings lanhost over IPv6"
    sum=$(lab exec user curl -6 -sS --max-time 60 "http://[fd00:77::10]:8080/file.bin" | sha256sum | cut -d' ' -f1) ||
        fail "$1: curl -6 failed"
    assert_eq "$WANT_SUM" "$sum" "$1: sha256 of the file fetched over IPv6 by user"
    out=$(lab exec user ping -c 2 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "$1: IPv4 beside IPv6: $out"
    echo "$1: ping6 and a 5 MB curl -6 (sha256 ok), IPv4 ping"
}
check_traffic "raw presence IPv6"
out=$(lab exec lanhost ping -6 -c 3 -i 0.2 -W 2 fd00:77::50 2>&1) || fail "lanhost cannot ping6 fd00:77::50: $out"
assert_contains "$out" "3 received" "lanhost pings the remote IPv6 address"
neigh=$(lab exec lanhost ip -6 neigh show fd00:77::50)
assert_contains "$neigh" "lladdr $LAN_MAC" "lanhost's neighbour entry for fd00:77::50"
echo "lanhost: $neigh"

# 2. Off the /64: to the gateway's MAC (learned by a solicitation), the answer comes back.
out=$(lab exec user ping -6 -c 3 -i 0.2 -W 2 fd00:99::1 2>&1) || fail "user cannot ping6 fd00:99::1 behind the gateway: $out"
assert_contains "$out" "3 received" "user pings a host behind the LAN's IPv6 gateway"
echo "gateway hop: user pings fd00:99::1 through fd00:77::1"

# 3. An address nobody has: after three solicitations, "address unreachable" from lan's address.
out=$(lab exec user ping -6 -c 1 -W 6 fd00:77::99 2>&1) && fail "a ping6 to an absent host got an answer: $out"
assert_contains "$out" "From fd00:77::2" "ping6 of an absent LAN address: the error's source"
assert_contains "$out" "Address unreachable" "ping6 of an absent LAN address"
echo "absent host: $(grep -m1 'nreachable' <<<"$out")"

# 4. Abuse.
echo "forged: $(forge forge)"
out=$(lab exec user ping -6 -c 3 -i 0.2 -W 2 fd00:77::10 2>&1) || fail "user -> lanhost after forged advertisements: $out"
assert_contains "$out" "3 received" "user pings lanhost after forged advertisements"
out=$(forge hoplimit)
assert_contains "$out" "answers to hop limit 254: 0" "a solicitation with hop limit 254"
out=$(forge other)
assert_contains "$out" "answers for fd00:77::51: 0" "a solicitation for an address the presence does not own"
forge flood
out=$(lab exec user ping -6 -c 3 -i 0.2 -W 2 fd00:77::10 2>&1) || fail "user -> lanhost after a solicitation flood: $out"
kill -0 "$mediator_pid" 2>/dev/null || fail "the mediator died"
echo "abuse: forged advertisements ignored, hop limit 254 and fd00:77::51 unanswered, flood survived"

kill -TERM -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
wait_log "$TEST_TMP/mediator.log" 'raw LAN presence: ARP answered [1-9]'
counters=$(grep -o 'raw LAN presence: ARP.*' "$TEST_TMP/mediator.log")
echo "mediator counters: $counters"
grep -qE 'ARP answered [0-9]+, learned [0-9]+, ignored [1-9]' <<<"$counters" ||
    fail "the forged advertisements were not counted as ignored: $counters"
kill -TERM -- "-$server_pid"
wait "$server_pid" 2>/dev/null || true
assert_as_before "lan" lan
echo "after stop: lan's links, addresses, routes, proxy entries and IPv4/IPv6 sysctls byte-for-byte as before"
echo "ok: $TEST_NAME"
