#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# ICMPv6 and host names in `ctl ping`/`ctl traceroute` (docs/protocol.md §11), from the mediator
# inside its LAN, through the real NAT:
#  - root mediator, ping_group_range closed: raw ICMPv6 socket; 3 replies from lanhost
#    fd00:77::10 with hop limits and times; an unused LAN address (fd00:77::99) gets no reply or
#    Address unreachable; an unused WAN address behind the gateway gets the gateway's Address
#    unreachable; a v6 destination outside --allow exits 2 (denied by policy); traceroute to the
#    server's host 2001:db8:113::10 shows the gateway hop (fd00:77::1, hop limit exceeded) first;
#    a request too big for the gateway's WAN side gets its packet too big with the MTU;
#  - names: the mediator resolves them in ITS view (a hosts file only its mount namespace sees;
#    the server's side cannot resolve the name at all), -4/-6 pick the family, an unknown name is
#    `name resolution failed`, a name resolving outside --allow is denied;
#  - ping_group_range opened in lan: the ICMPv6 datagram socket, same replies, the gateway hop and
#    unreachable through the error queue (IPV6_RECVERR).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

start_server server --keepalive 1 --dead-timeout 5
# The LAN's and WAN's IPv6 prefixes (and IPv4 LAN for the names' -4), on one port each: an ECHO is
# allowed to any destination some rule covers (§11.3).
ALLOW=(--allow '[fd00:77::/64]:22' --allow '[2001:db8:113::/64]:7000' --allow 192.168.77.0/24:22)
# The mediator's own view of names: a hosts file (and resolv.conf) bound over /etc/hosts in a mount namespace of its
# own (private propagation: nothing leaks to the host, it ends with the process).
cat >"$TEST_TMP/hosts" <<'HOSTS'
127.0.0.1 localhost
fd00:77::10 lanhost.lan lanhost
192.168.77.10 lanhost.lan lanhost
2001:db8:113::10 server.lan
2001:db8:dead::7 outside.lan
HOSTS
# No name server in that view (nothing listens on lan's loopback): names not in the hosts file fail
# at once instead of waiting on the host's resolver, which the lab cannot reach.
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$TEST_TMP/resolv.conf"
# start_mediator_view LOG: the mediator with --allow ALLOW, seeing $TEST_TMP/hosts as /etc/hosts.
start_mediator_view() {
    bg lan "$1" unshare --mount --propagation private sh -c \
        "mount --bind '$TEST_TMP/hosts' /etc/hosts && mount --bind '$TEST_TMP/resolv.conf' /etc/resolv.conf && exec '$POSTERN_BIN' mediator --server 203.0.113.10:7000 --name acme --secret-file '$TEST_TMP/secret' $(printf "'%s' " "${ALLOW[@]}")"
}
start_mediator_view mediator
wait_mediator acme
wait_log "$TEST_TMP/mediator.log" 'ICMP echo: raw ICMP socket'
# The LAN's IPv6 has settled (DAD is off in the lab, but routes may lag): wait until lan reaches lanhost.
end=$((SECONDS + 10))
until lab exec lan ping -6 -c1 -W1 -q fd00:77::10 >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "lan cannot reach fd00:77::10 by itself"
    sleep 0.2
done

check_v6() {
    local kind=$1 out rc n
    # 1. Three replies from lanhost, each with its hop limit and time, and the summary.
    out=$(ctl ping acme fd00:77::10 --count 3 --interval 0.2) || fail "$kind: ping6 lanhost: $out"
    echo "$out"
    n=$(grep -cE '^64 bytes from fd00:77::10: icmp_seq=[123] ttl=64 time=[0-9]+\.[0-9]+ ms$' <<<"$out" || true)
    assert_eq 3 "$n" "$kind: ICMPv6 replies with times"
    assert_contains "$out" "3 packets transmitted, 3 received, 0% packet loss"
    # A size other than the default travels whole.
    out=$(ctl ping acme fd00:77::10 --count 1 --size 1000) || fail "$kind: ping6 1000 bytes: $out"
    assert_contains "$out" "1008 bytes from fd00:77::10: icmp_seq=1"

    # 2. Nobody at fd00:77::99: no reply (neighbour discovery fails; the host may say so).
    rc=0
    out=$(ctl ping acme fd00:77::99 --count 2 --interval 0.2 --timeout 4) || rc=$?
    echo "$out"
    assert_eq 1 "$rc" "$kind: ping6 of an unused address: exit status"
    grep -qE 'no answer from fd00:77::99: icmp_seq=1|Destination unreachable: Address unreachable' <<<"$out" ||
        fail "$kind: unused address: $out"
    assert_contains "$out" "2 packets transmitted, 0 received"
    # Nobody at 2001:db8:113::99 behind the gateway: its neighbour discovery fails and it says so.
    rc=0
    out=$(ctl ping acme 2001:db8:113::99 --count 1 --timeout 8) || rc=$?
    echo "$out"
    assert_eq 1 "$rc" "$kind: ping6 of an unused WAN address: exit status"
    grep -qE '^From (fd00:77::1|2001:db8:113::1) icmp_seq=1 Destination unreachable: Address unreachable$' <<<"$out" ||
        fail "$kind: no Address unreachable from the gateway: $out"
    assert_contains "$out" "1 packets transmitted, 0 received, +1 errors"

    # 3. traceroute to the server's host: the gateway's hop limit exceeded first, then the host.
    out=$(ctl traceroute acme 2001:db8:113::10 --max-hops 5) || fail "$kind: traceroute6 to the WAN: $out"
    echo "$out"
    grep -qE '^ 1  fd00:77::1  [0-9.]+ ms$' <<<"$out" || fail "$kind: traceroute6: no gateway hop: $out"
    grep -qE '^ 2  2001:db8:113::10  [0-9.]+ ms$' <<<"$out" || fail "$kind: traceroute6 did not end at 2001:db8:113::10: $out"
    out=$(ctl traceroute acme fd00:77::10 --max-hops 3) || fail "$kind: traceroute6 to lanhost: $out"
    grep -qE '^ 1  fd00:77::10  [0-9.]+ ms$' <<<"$out" || fail "$kind: traceroute6 did not end at lanhost: $out"

    # 4. Packet too big: the gateway's WAN side cut to 1280 bytes; a 1400-byte request gets the
    # gateway's packet too big with that MTU (lan forgets any path MTU it learnt before).
    lab exec lan ip -6 route flush cache
    lab exec gw ip link set br-wan mtu 1280
    rc=0
    out=$(ctl ping acme 2001:db8:113::10 --count 1 --size 1400 --timeout 3) || rc=$?
    lab exec gw ip link set br-wan mtu 1500
    echo "$out"
    grep -qE '^From (fd00:77::1|2001:db8:113::1) icmp_seq=1 Packet too big: mtu=1280$' <<<"$out" ||
        fail "$kind: no packet too big from the gateway: $out"
    lab exec lan ip -6 route flush cache
}

check_v6 raw
lab exec lanhost ip -6 neigh show fd00:77::2 | grep -q . || fail "lanhost never heard from fd00:77::2"

# 4. A v6 destination no rule covers: denied by policy on the mediator, exit 2, said plainly.
rc=0
out=$(ctl ping acme 2001:db8:dead::7 --count 1 2>&1) || rc=$?
echo "$out"
assert_eq 2 "$rc" "denied ping6: exit status"
assert_contains "$out" "denied by policy"
wait_log "$TEST_TMP/mediator.log" 'ICMP echo to \[2001:db8:dead::7\] denied by policy'
rc=0
out=$(ctl traceroute acme 2001:db8:dead::7 2>&1) || rc=$?
assert_eq 2 "$rc" "denied traceroute6: exit status"
assert_contains "$out" "denied by policy"

# 5. Names, resolved by the mediator: lanhost is known only in its view (the server's host, where
# ctl runs, cannot resolve it).
if lab exec wan getent hosts lanhost >/dev/null 2>&1; then fail "the server's side resolves lanhost: the test proves nothing"; fi
out=$(ctl ping acme lanhost -6 --count 2 --interval 0.2) || fail "ping -6 lanhost: $out"
echo "$out"
assert_eq 2 "$(grep -cE '^64 bytes from fd00:77::10: icmp_seq=[12] ttl=64' <<<"$out" || true)" "ping -6 lanhost: replies"
out=$(ctl ping acme lanhost.lan -4 --count 1) || fail "ping -4 lanhost.lan: $out"
assert_contains "$out" "64 bytes from 192.168.77.10: icmp_seq=1 ttl=64"
out=$(ctl traceroute acme server.lan --max-hops 5) || fail "traceroute server.lan: $out"
echo "$out"
grep -qE '^ 1  fd00:77::1  [0-9.]+ ms$' <<<"$out" || fail "traceroute server.lan: no gateway hop: $out"
grep -qE '^ 2  2001:db8:113::10  [0-9.]+ ms$' <<<"$out" || fail "traceroute server.lan: no final hop: $out"
# server.lan has no IPv4 address: -4 cannot resolve it, said plainly, exit 2.
rc=0
out=$(ctl ping acme server.lan -4 --count 1 2>&1) || rc=$?
echo "$out"
assert_eq 2 "$rc" "ping -4 to a name without IPv4: exit status"
assert_contains "$out" "name resolution failed: cannot resolve server.lan (IPv4)"
rc=0
out=$(ctl ping acme nosuchhost.invalid --count 1 2>&1) || rc=$?
assert_eq 2 "$rc" "unknown name: exit status"
assert_contains "$out" "name resolution failed"
assert_contains "$out" "nosuchhost.invalid"
# A name is no way around the policy: it applies to the address the name resolved to.
rc=0
out=$(ctl ping acme outside.lan --count 1 2>&1) || rc=$?
assert_eq 2 "$rc" "a name resolving outside --allow: exit status"
assert_contains "$out" "ICMP echo to [2001:db8:dead::7] is denied by policy"
# Abuse: a name the command line refuses before anything is sent, and -4 with an IPv6 address.
rc=0
out=$(ctl ping acme 'bad name' --count 1 2>&1) || rc=$?
assert_eq 64 "$rc" "a name with a space: exit status (usage)"
rc=0
out=$(ctl ping acme fd00:77::10 -4 --count 1 2>&1) || rc=$?
assert_eq 64 "$rc" "-4 with an IPv6 address: exit status (usage)"
# Abuse: 40 concurrent pings to names that never resolve in time are bounded like any ECHO (16 in
# flight, the rest refused), and the session still works afterwards.
flood=()
for i in $(seq 1 40); do
    lab exec wan "$POSTERN_BIN" ctl ping acme "flood$i.invalid" --count 1 >"$TEST_TMP/flood.$i" 2>&1 &
    flood+=("$!")
done
for pid in "${flood[@]}"; do wait "$pid" || true; done
answered=$(grep -l "name resolution failed\|limit exceeded" "$TEST_TMP"/flood.* | wc -l)
assert_eq 40 "$answered" "flood of names: every request answered (name resolution failed or limit exceeded)"
# Each lookup holds its slot until it ends: poll until the slots are free again.
end=$((SECONDS + 30))
until out=$(ctl ping acme fd00:77::10 --count 1 2>&1); do
    ((SECONDS < end)) || fail "ping6 after the flood of names: $out"
    sleep 0.5
done
assert_contains "$out" "1 received"

# 6. ping_group_range open in lan (root's group 0 included): the ICMPv6 datagram socket.
kill -TERM -- "-$(last_bg_pid)"
lab exec lan sysctl -qw net.ipv4.ping_group_range="0 2147483647"
start_mediator_view mediator_dgram
wait_log "$TEST_TMP/mediator_dgram.log" 'ICMP echo: ICMP datagram socket'
wait_log "$TEST_TMP/mediator_dgram.log" 'connected to'
wait_mediator acme
sleep 0.5
check_v6 datagram
out=$(ctl ping acme lanhost -6 --count 1) || fail "datagram: ping -6 lanhost: $out"
assert_contains "$out" "64 bytes from fd00:77::10: icmp_seq=1 ttl=64"
lab exec lan sysctl -qw net.ipv4.ping_group_range="1 0"
echo "ok: $TEST_NAME"
