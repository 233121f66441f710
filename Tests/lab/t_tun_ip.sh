#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# TUN mode (docs/protocol.md §10) as IP, beside t_tun.sh's ping/curl/cleanup checks, through the real
# NAT with the same setup (user routes 192.168.77.0/24 through wan, wan masquerades onto pts-acme):
# - traceroute by TTL-limited pings: hop 1 is wan, hop 2 the mediator's host lan (its "time exceeded"
#   crosses the tunnel back and wan's conntrack hands it to user), hop 3 lanhost answers;
# - a 1,472-byte ping with DF (a 1,500-byte packet) is answered "fragmentation needed, MTU 1400" by
#   wan's kernel at pts-acme, and a 1,372-byte one (1,400 bytes, what the devices carry) passes;
# - an 8,972-byte ping without DF passes as fragments, both ways;
# - with pts-acme's MTU raised by hand above what TUN mode carries, postern itself answers a DF packet
#   it cannot carry with "fragmentation needed" naming the tunnel's MTU, and counts it; a flood of
#   them gets at most 100 errors a second;
# - iperf3 UDP, both ways;
# - `--pcap` on both ends records what the tun devices carried: tcpdump reads the echo requests and
#   replies of the pings above, whole fragments of the 9,000-byte ones included.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mediator() {
    ctl mediators --json | python3 -c "import json,sys
m = next((m for m in json.load(sys.stdin) if m['name'] == sys.argv[1]), {})
print($2)" "$1"
}
tun() { mediator acme "m.get('tun', {}).get('$1', '')"; }
wait_tun_up() {
    local end=$((SECONDS + $1))
    until [[ $(tun status 2>/dev/null) == up ]]; do
        ((SECONDS < end)) || fail "TUN mode not up within $1 s: $(ctl mediators 2>&1)"
        sleep 0.2
    done
}
wait_path() {
    local want=$1 end=$((SECONDS + $2))
    until [[ $(mediator acme "m['datagrams']['path']" 2>/dev/null) == "$want" ]]; do
        ((SECONDS < end)) || fail "packets did not move to $want within $2 s: $(ctl mediators)"
        sleep 0.2
    done
}
# iperf_udp WHAT ARGS...: a 3 s iperf3 UDP run from user to lanhost at 10 Mbit/s; prints the loss and
# fails above 20 % or when little arrived (a debug build on a loaded host loses some at the start; the
# bench measures the real rate).
iperf_udp() {
    local what=$1 out; shift
    out=$(lab exec user iperf3 -c 192.168.77.10 -p 5201 -u -b 10M -l 1200 -t 3 -J "$@" 2>&1) || fail "iperf3 UDP $what: $out"
    python3 -c "import json,sys
s = json.loads(sys.argv[1])['end']['sum']
print(f\"iperf3 UDP $what: {s['bits_per_second'] / 1e6:.1f} Mbit/s, {s['lost_packets']}/{s['packets']} lost ({s['lost_percent']:.2f} %)\")
sys.exit(0 if s['packets'] > 1000 and s['lost_percent'] <= 20 else 1)" "$out" || fail "iperf3 UDP $what lost too much or carried too little"
}

tun_route_via_server
bg lanhost iperf iperf3 -s -B 192.168.77.10 -p 5201
start_server server --udp-keepalive 2 --tun --pcap "$TEST_TMP/server.pcap"
start_mediator mediator --tun 192.168.77.50/24 --udp-keepalive 2 --pcap "$TEST_TMP/mediator.pcap"
wait_mediator acme
wait_tun_up 10
wait_path udp 10
wait_tcp lanhost 192.168.77.10 5201

# 1. Traceroute, one TTL at a time (ping -t): each hop's "time exceeded" comes back to user.
out=$(lab exec user ping -c 1 -W 2 -t 1 192.168.77.10 2>&1 || true)
assert_contains "$out" "From 203.0.113.10 icmp_seq=1 Time to live exceeded" "hop 1 (wan)"
out=$(lab exec user ping -c 1 -W 3 -t 2 192.168.77.10 2>&1 || true)
assert_contains "$out" "From 192.168.77.2 icmp_seq=1 Time to live exceeded" "hop 2 (lan, across the tunnel)"
out=$(lab exec user ping -c 1 -W 3 -t 3 192.168.77.10 2>&1) || fail "hop 3: $out"
assert_contains "$out" "1 received" "hop 3 (lanhost answers)"
echo "traceroute: 203.0.113.10, 192.168.77.2 (time exceeded through the tunnel), 192.168.77.10"

# 2. DF: 1,500 bytes do not fit the 1,400 of the devices; the sender learns the MTU, and 1,400 pass.
out=$(lab exec user ping -c 2 -i 0.3 -W 2 -M do -s 1472 192.168.77.10 2>&1 || true)
[[ $out =~ (mtu = 1400|mtu=1400) ]] || fail "a 1,500-byte DF ping was not answered 'fragmentation needed, MTU 1400': $out"
out=$(lab exec user ping -c 3 -i 0.2 -W 2 -M do -s 1372 192.168.77.10 2>&1) || fail "a 1,400-byte DF ping: $out"
assert_contains "$out" "3 received" "a 1,400-byte DF ping"
echo "DF: 1,500 bytes answered 'fragmentation needed, mtu 1400'; 1,400 bytes pass"

# 2b. pts-acme's MTU raised by hand to 1,500: wan's kernel now hands postern 1,500-byte DF packets,
# more than TUN mode carries (1,400, TUN_READY). Postern answers each with ICMP "fragmentation
# needed, MTU 1400" back into the device (wan's conntrack takes it to user), and counts it. A new
# destination (lan's 192.168.77.2), so user has no cached path MTU for it from step 2.
lab exec wan ip link set pts-acme mtu 1500
frag_before=$(tun fragmentationNeeded)
large_before=$(mediator acme "m['tun']['dropped'].get('tooLarge', 0)")
out=$(lab exec user ping -c 2 -i 0.3 -W 2 -M do -s 1472 192.168.77.2 2>&1 || true)
[[ $out =~ (mtu = 1400|mtu=1400) ]] || fail "postern did not answer a 1,500-byte DF packet with 'fragmentation needed, MTU 1400': $out"
(($(tun fragmentationNeeded) > frag_before)) || fail "fragmentationNeeded did not grow: $(ctl mediators --json)"
(($(mediator acme "m['tun']['dropped'].get('tooLarge', 0)") > large_before)) || fail "the oversize packet was not counted as tooLarge"
echo "postern's own 'fragmentation needed': $(grep -m1 -E 'mtu' <<<"$out"); fragmentationNeeded $(tun fragmentationNeeded)"

# Abuse: a flood of such packets (UDP with IP_PMTUDISC_PROBE: DF set, the path MTU user learned
# ignored; 1,000 of them, one every 2 ms) gets at most 100 errors a second (+100 for the windows at
# either end); the rest are counted as icmpRateLimit, and the tunnel works on.
frag_flood=$(tun fragmentationNeeded)
seconds=$(lab exec user python3 -c 'import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE
start = time.monotonic()
for i in range(1000):
    try:
        s.sendto(bytes(1472), ("192.168.77.2", 9))
    except OSError:
        pass
    time.sleep(0.002)
print(int(time.monotonic() - start) + 1)')
lab exec wan ip link set pts-acme mtu 1400
sent=$(($(tun fragmentationNeeded) - frag_flood))
limited=$(mediator acme "m['tun']['dropped'].get('icmpRateLimit', 0)")
((sent >= 100 && sent <= 100 * (seconds + 1) && limited > 0)) ||
    fail "flood: $sent errors sent in under $seconds s (want 100 to $((100 * (seconds + 1)))), $limited rate-limited"
echo "flood of 1,000 oversize DF packets in under $seconds s: $sent errors sent, $limited held back by the rate limit"
out=$(lab exec user ping -c 3 -i 0.2 -W 2 -M do -s 1372 192.168.77.2 2>&1) || fail "a 1,400-byte DF ping to lan after the flood: $out"

# 3. 9,000-byte pings without DF: fragments cross the tunnel, both ways.
out=$(lab exec user ping -c 3 -i 0.3 -W 3 -M dont -s 8972 192.168.77.10 2>&1) || fail "user: 9,000-byte ping: $out"
assert_contains "$out" "3 received" "user pings lanhost with 9,000 bytes"
out=$(lab exec lanhost ping -c 3 -i 0.3 -W 3 -M dont -s 8972 192.168.77.50 2>&1) || fail "lanhost: 9,000-byte ping: $out"
assert_contains "$out" "3 received" "lanhost pings the remote side with 9,000 bytes"
echo "fragments: 9,000-byte pings both ways"

# 4. iperf3 UDP both ways.
iperf_udp "user -> lanhost"
iperf_udp "lanhost -> user" -R

# 5. --pcap: both ends recorded their tun device's packets (raw IP), which tcpdump reads.
for side in server mediator; do
    f="$TEST_TMP/$side.pcap"
    requests=$(tcpdump -n -r "$f" 'icmp[icmptype] = icmp-echo and dst host 192.168.77.10' 2>/dev/null | wc -l)
    replies=$(tcpdump -n -r "$f" 'icmp[icmptype] = icmp-echoreply and src host 192.168.77.10' 2>/dev/null | wc -l)
    fragments=$(tcpdump -n -r "$f" 'ip[6:2] & 0x1fff != 0' 2>/dev/null | wc -l)
    ((requests >= 6 && replies >= 6)) || fail "$side --pcap: $requests echo requests, $replies replies to/from lanhost"
    ((fragments >= 6)) || fail "$side --pcap: only $fragments later fragments of the 9,000-byte pings"
    echo "$side --pcap: $requests echo requests, $replies replies, $fragments later fragments (tcpdump -r)"
done

echo "ok: $TEST_NAME"
