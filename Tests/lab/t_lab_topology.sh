#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The lab itself: NAT out, no way in, block-tunnel, dnat, and idempotent
# up/down. Everything it sends stays inside the namespaces it created.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
lab_setup

# --- NAT out: lan -> wan over TCP; the server must see the gw's public address.
# socat hands the peer address to the SYSTEM command in $SOCAT_PEERADDR.
# shellcheck disable=SC2016 # expanded by the shell socat starts, not here
bg wan nat4 socat -d -d TCP-LISTEN:5000,bind=203.0.113.10,reuseaddr,fork SYSTEM:'echo "$SOCAT_PEERADDR"'
# shellcheck disable=SC2016
bg wan nat6 socat -d -d TCP6-LISTEN:5001,'bind=[2001:db8:113::10]',reuseaddr,fork SYSTEM:'echo "$SOCAT_PEERADDR"'
wait_tcp wan 203.0.113.10 5000
wait_tcp wan 2001:db8:113::10 5001
seen=$(lab exec lan socat -T5 -u TCP:203.0.113.10:5000 STDOUT)
assert_eq 203.0.113.1 "$seen" "IPv4 source seen by wan (masquerade)"
wait_log "$TEST_TMP/nat4.log" 'accepting connection from AF=2 203\.0\.113\.1:'
seen=$(lab exec lan socat -T5 -u 'TCP6:[2001:db8:113::10]:5001' STDOUT)
# (socat prints IPv6 addresses fully expanded)
assert_eq "[2001:0db8:0113:0000:0000:0000:0000:0001]" "$seen" "IPv6 source seen by wan (masquerade)"

# --- No way in. The public side has no route to the LAN at all...
bg lan inbound socat -d -d TCP-LISTEN:5002,reuseaddr,fork SYSTEM:'echo hello'
wait_tcp lan 192.168.77.2 5002
if lab exec user socat -T2 /dev/null TCP:192.168.77.2:5002,connect-timeout=2 2>/dev/null; then
    fail "user reached 192.168.77.2:5002 without any route"
fi
# ...and even a public host that routes the LAN via gw (a hostile neighbour)
# gets its new connection dropped by gw's forward chain: a timeout, not a refusal.
lab exec user ip route add 192.168.77.0/24 via 203.0.113.1
if err=$(lab exec user socat -T2 /dev/null TCP:192.168.77.2:5002,connect-timeout=2 2>&1); then
    fail "user opened a TCP connection to 192.168.77.2:5002 through gw"
fi
assert_contains "$err" "timed out" "inbound SYN must be dropped silently"
lab exec user ip route del 192.168.77.0/24 via 203.0.113.1
if grep -q 'accepting connection from AF=2 203\.0\.113' "$TEST_TMP/inbound.log"; then
    fail "the LAN listener saw a connection from the public side"
fi

# --- block-tunnel: established flows stall both ways, and resume on unblock.
# Upstream: lan writes into a fifo-fed client; wan writes what it gets to a file.
mkfifo "$TEST_TMP/up.fifo" "$TEST_TMP/down.fifo"
bg wan up_srv socat -u TCP-LISTEN:5003,bind=203.0.113.10,reuseaddr "CREATE:$TEST_TMP/up.out"
# Downstream: wan sends what its fifo gets to the client; lan writes it to a
# file. -U (right to left) so socat listens first and opens the fifo only once
# the client is connected.
bg wan down_srv socat -U TCP-LISTEN:5004,bind=203.0.113.10,reuseaddr "OPEN:$TEST_TMP/down.fifo,rdonly"
# Probing with ss, not wait_tcp: these listeners take exactly one connection.
lab exec wan bash -c 'until ss -Htln "( sport = :5003 or sport = :5004 )" | grep -c . | grep -qx 2; do sleep 0.1; done'
bg lan up_cli socat -u "OPEN:$TEST_TMP/up.fifo,rdonly" TCP:203.0.113.10:5003
bg lan down_cli socat -u TCP:203.0.113.10:5004 "CREATE:$TEST_TMP/down.out"
# Opening the fifos for writing blocks until the readers (socat) have them open.
exec 3>"$TEST_TMP/up.fifo" 4>"$TEST_TMP/down.fifo"
echo up-1 >&3
echo down-1 >&4
wait_log "$TEST_TMP/up.out" '^up-1$'
wait_log "$TEST_TMP/down.out" '^down-1$'
# UDP too: socat sends one datagram per line it reads.
bg wan udp_srv socat -u UDP-RECV:5005,bind=203.0.113.10 "CREATE:$TEST_TMP/udp.out"
lab exec wan bash -c 'until ss -Huln "sport = :5005" | grep -q .; do sleep 0.1; done'
echo udp-1 | lab exec lan socat -u STDIN UDP-SENDTO:203.0.113.10:5005
wait_log "$TEST_TMP/udp.out" '^udp-1$'

lab block-tunnel 5003
lab block-tunnel 5004
lab block-tunnel 5005
lab block-tunnel 5005   # idempotent
echo up-2 >&3
echo down-2 >&4
echo udp-2 | lab exec lan socat -u STDIN UDP-SENDTO:203.0.113.10:5005
sleep 3
if grep -q up-2 "$TEST_TMP/up.out"; then fail "up-2 crossed a blocked tunnel (lan -> wan)"; fi
if grep -q down-2 "$TEST_TMP/down.out"; then fail "down-2 crossed a blocked tunnel (wan -> lan)"; fi
if grep -q udp-2 "$TEST_TMP/udp.out"; then fail "udp-2 crossed a blocked tunnel"; fi
# Dropped, not rejected: the TCP flows are still established on both ends.
n=$(lab exec lan ss -Htn state established '( dport = :5003 or dport = :5004 )' | wc -l)
assert_eq 2 "$n" "established lan flows while blocked"

lab unblock-tunnel
# TCP retransmits the stalled data; the backoff is a few seconds by now.
wait_log "$TEST_TMP/up.out" '^up-2$' 20
wait_log "$TEST_TMP/down.out" '^down-2$' 20
echo udp-3 | lab exec lan socat -u STDIN UDP-SENDTO:203.0.113.10:5005
wait_log "$TEST_TMP/udp.out" '^udp-3$'
exec 3>&- 4>&-

# --- conntrack-timeout writes gw's sysctls.
lab conntrack-timeout udp 7
lab conntrack-timeout tcp-established 99
assert_eq 7 "$(lab exec gw sysctl -n net.netfilter.nf_conntrack_udp_timeout)" "udp timeout"
assert_eq 7 "$(lab exec gw sysctl -n net.netfilter.nf_conntrack_udp_timeout_stream)" "udp stream timeout"
assert_eq 99 "$(lab exec gw sysctl -n net.netfilter.nf_conntrack_tcp_timeout_established)" "tcp timeout"

# --- dnat: user -> 203.0.113.1:PORT reaches a listener in lanhost.
# shellcheck disable=SC2016
bg lanhost web socat TCP-LISTEN:8080,bind=192.168.77.10,reuseaddr,fork SYSTEM:'echo "lanhost $SOCAT_PEERADDR"'
wait_tcp lanhost 192.168.77.10 8080
if lab exec user socat -T2 -u TCP:203.0.113.1:8081,connect-timeout=2 STDOUT 2>/dev/null; then
    fail "203.0.113.1:8081 answered before any dnat"
fi
lab dnat 8081 192.168.77.10:8080
lab dnat 8081 192.168.77.10:8080   # idempotent: replaces, does not duplicate
assert_eq 1 "$(lab exec gw nft list chain inet postern_lab prerouting | grep -c postern-dnat-8081)" "dnat rules"
seen=$(lab exec user socat -T5 -u TCP:203.0.113.1:8081 STDOUT)
# No SNAT on the way in: lanhost sees the real user address.
assert_eq "lanhost 203.0.113.20" "$seen" "reply through the DNAT port forward"
# The same over IPv6, to a v6 listener in lanhost.
# shellcheck disable=SC2016
bg lanhost web6 socat TCP6-LISTEN:8080,'bind=[fd00:77::10]',reuseaddr,fork SYSTEM:'echo "lanhost $SOCAT_PEERADDR"'
wait_tcp lanhost fd00:77::10 8080
lab dnat 8082 '[fd00:77::10]:8080'
seen=$(lab exec user socat -T5 -u 'TCP6:[2001:db8:113::1]:8082' STDOUT)
assert_eq "lanhost [2001:0db8:0113:0000:0000:0000:0000:0020]" "$seen" "reply through the IPv6 DNAT"
lab undnat
if lab exec user socat -T2 -u TCP:203.0.113.1:8081,connect-timeout=2 STDOUT 2>/dev/null; then
    fail "203.0.113.1:8081 still answers after undnat"
fi

# --- addr
assert_eq 192.168.77.2 "$(lab addr lan)" "addr lan"
assert_eq 2001:db8:113::10 "$(lab addr wan -6)" "addr wan -6"

# --- up twice = same state; down twice = no error, nothing left.
snapshot() {
    local n
    for n in gw lan lanhost wan user; do
        lab exec "$n" ip -br addr show
        lab exec "$n" ip route show
        lab exec "$n" ip -6 route show
    done
    lab exec gw nft list ruleset | grep -v 'counter packets'
}
before=$(snapshot)
lab up >/dev/null
lab up >/dev/null
assert_eq "$before" "$(snapshot)" "state after up twice"
lab down >/dev/null
lab down >/dev/null
left=$(ip netns list | grep -E "^${POSTERN_LAB_PREFIX}(lan|lanhost|gw|wan|user)( |$)" || true)
assert_eq "" "$left" "namespaces left after down"
echo "ok: $TEST_NAME"
