#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# ICMP in stream mode (docs/protocol.md §11): `ctl ping`/`ctl traceroute` send echo requests from
# the mediator inside its LAN, through the real NAT, and print what came back:
#  - root mediator, ping_group_range closed: raw socket; 3 replies from lanhost with times; an
#    unused LAN address (192.168.77.99) gets no reply; an unused WAN address gets the LAN gateway's
#    Destination Host Unreachable; a destination outside --allow is denied by policy; traceroute to
#    lanhost shows the final hop, to the server's host the gateway hop (time exceeded) first;
#    `ctl mediators` shows the raw features;
#  - a flood of ping requests: at most 16 in flight on the mediator, the rest refused, the session lives;
#  - ping_group_range opened in lan: the datagram socket, same replies;
#  - without CAP_NET_RAW and with ping_group_range closed: the refusal names what is missing;
#  - a --tun mediator without CAP_NET_ADMIN names that capability at start.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup
# wait_listed WORD: until `ctl mediators` shows WORD (sets out). The mediator logs "connected to"
# before it sends ENVIRONMENT, which carries its ICMP capabilities: a fixed pause assumed that frame
# is read within it.
wait_listed() {
    local end=$((SECONDS + 10))
    until out=$(ctl mediators) && [[ $out == *"$1"* ]]; do
        ((SECONDS < end)) || fail "ctl mediators does not show '$1' within 10 s: $out"
        sleep 0.2
    done
}

start_server server --keepalive 1 --dead-timeout 5
# The LAN on port 22 and the WAN on 7000 only: an ECHO is allowed to any destination some rule
# covers (§11.3), whatever its ports.
ALLOW=(--allow 192.168.77.0/24:22 --allow 203.0.113.0/24:7000)
start_mediator mediator "${ALLOW[@]}"
wait_mediator acme
wait_log "$TEST_TMP/mediator.log" 'ICMP echo: raw ICMP socket'

out=$(ctl mediators)
echo "$out" | head -1
assert_contains "$out" "raw-sockets"
assert_contains "$out" "net-admin"
assert_contains "$out" ",echo"

# 1. Three replies from lanhost, each with a time, and the summary.
out=$(ctl ping acme 192.168.77.10 --count 3 --interval 0.2) || fail "ping lanhost: $out"
echo "$out"
n=$(grep -cE '^64 bytes from 192\.168\.77\.10: icmp_seq=[123] ttl=64 time=[0-9]+\.[0-9]+ ms$' <<<"$out" || true)
assert_eq 3 "$n" "replies with times"
assert_contains "$out" "3 packets transmitted, 3 received, 0% packet loss"
grep -qE '^rtt min/avg/max = [0-9.]+/[0-9.]+/[0-9.]+ ms$' <<<"$out" || fail "no rtt summary: $out"
# The requests came from the mediator's LAN address (lanhost answers 192.168.77.2, not the server).
lab exec lanhost ip neigh show 192.168.77.2 | grep -q . || fail "lanhost never heard from 192.168.77.2"

# A size other than the default travels whole.
out=$(ctl ping acme 192.168.77.10 --count 1 --size 1000) || fail "ping 1000 bytes: $out"
assert_contains "$out" "1008 bytes from 192.168.77.10: icmp_seq=1"

# 2. Nobody at 192.168.77.99: no reply (ARP fails; the host may say Destination Host Unreachable).
rc=0
out=$(ctl ping acme 192.168.77.99 --count 2 --interval 0.2 --timeout 1) || rc=$?
echo "$out"
assert_eq 1 "$rc" "ping of an unused address: exit status"
grep -qE 'no answer from 192\.168\.77\.99: icmp_seq=1|Destination Host Unreachable' <<<"$out" || fail "unused address: $out"
assert_contains "$out" "2 packets transmitted, 0 received"

# Nobody at 203.0.113.99 behind the gateway: its ARP fails and it answers host unreachable (from its
# WAN address, as Linux routers do unless icmp_errors_use_inbound_ifaddr is set).
rc=0
out=$(ctl ping acme 203.0.113.99 --count 1 --timeout 6) || rc=$?
echo "$out"
assert_eq 1 "$rc" "ping of an unused WAN address: exit status"
assert_contains "$out" "From 203.0.113.1 icmp_seq=1 Destination Host Unreachable"
assert_contains "$out" "1 packets transmitted, 0 received, +1 errors"

# 3. A destination no rule covers: denied by policy on the mediator, said plainly.
rc=0
out=$(ctl ping acme 198.51.100.7 --count 1 2>&1) || rc=$?
echo "$out"
assert_eq 2 "$rc" "denied ping: exit status"
assert_contains "$out" "denied by policy"
wait_log "$TEST_TMP/mediator.log" 'ICMP echo to 198\.51\.100\.7 denied by policy'
rc=0
out=$(ctl traceroute acme 198.51.100.7 2>&1) || rc=$?
assert_eq 2 "$rc" "denied traceroute: exit status"
assert_contains "$out" "denied by policy"

# 4. traceroute to lanhost: on the mediator's own link, the final hop is the first.
out=$(ctl traceroute acme 192.168.77.10 --max-hops 5) || fail "traceroute: $out"
echo "$out"
grep -qE '^ 1  192\.168\.77\.10  [0-9.]+ ms$' <<<"$out" || fail "traceroute did not end at lanhost: $out"
# Through the NAT gateway: its time exceeded first, then the server's host.
out=$(ctl traceroute acme 203.0.113.10 --max-hops 5) || fail "traceroute to the WAN: $out"
echo "$out"
grep -qE '^ 1  192\.168\.77\.1  [0-9.]+ ms$' <<<"$out" || fail "traceroute: no gateway hop: $out"
grep -qE '^ 2  203\.0\.113\.10  [0-9.]+ ms$' <<<"$out" || fail "traceroute did not end at 203.0.113.10: $out"

# 5. Abuse: 60 concurrent requests to the silent address, each waiting 10 s (the most ECHO allows:
# far longer than the 60 ctl processes take to start on a loaded host, so all are in flight together;
# with 3 s the first had ended before the last arrived, and more than 16 were served in all). The
# mediator holds at most 16; the rest are refused "limit exceeded"; the session and later pings work.
flood=()
for i in $(seq 1 60); do
    lab exec wan "$POSTERN_BIN" ctl ping acme 192.168.77.99 --count 1 --timeout 10 >"$TEST_TMP/flood.$i" 2>&1 &
    flood+=("$!")
done
for pid in "${flood[@]}"; do wait "$pid" || true; done
refused=$(grep -l "limit exceeded\|limitExceeded" "$TEST_TMP"/flood.* | wc -l)
waited=$(grep -l "packets transmitted" "$TEST_TMP"/flood.* | wc -l)
echo "flood: $waited waited for an answer, $refused refused"
((waited <= 16)) || fail "flood: $waited requests were in flight on the mediator at once (limit 16)"
((refused >= 40)) || fail "flood: only $refused of 60 refused"
((waited + refused == 60)) || fail "flood: $waited + $refused != 60: $(cat "$TEST_TMP"/flood.* | sort | uniq -c)"
out=$(ctl ping acme 192.168.77.10 --count 1) || fail "ping after the flood: $out"
assert_contains "$out" "1 received"

# 6. ping_group_range open in lan (root's group 0 included): the unprivileged datagram socket.
kill -TERM -- "-$(last_bg_pid)"
lab exec lan sysctl -qw net.ipv4.ping_group_range="0 2147483647"
start_mediator mediator_dgram "${ALLOW[@]}"
wait_log "$TEST_TMP/mediator_dgram.log" 'ICMP echo: ICMP datagram socket'
wait_log "$TEST_TMP/mediator_dgram.log" 'connected to'
wait_listed icmp-datagram
out=$(ctl ping acme 192.168.77.10 --count 3 --interval 0.2) || fail "ping over the datagram socket: $out"
echo "$out" | tail -2
n=$(grep -cE '^64 bytes from 192\.168\.77\.10: icmp_seq=[123] ttl=64 time=[0-9]+\.[0-9]+ ms$' <<<"$out" || true)
assert_eq 3 "$n" "replies over the datagram socket"
out=$(ctl traceroute acme 192.168.77.10 --max-hops 3) || fail "traceroute over the datagram socket: $out"
grep -qE '^ 1  192\.168\.77\.10  [0-9.]+ ms$' <<<"$out" || fail "traceroute (datagram socket): $out"
# Time exceeded and unreachable come through the error queue (IP_RECVERR) here.
out=$(ctl traceroute acme 203.0.113.10 --max-hops 5) || fail "traceroute to the WAN (datagram socket): $out"
echo "$out"
grep -qE '^ 1  192\.168\.77\.1  [0-9.]+ ms$' <<<"$out" || fail "traceroute (datagram socket): no gateway hop: $out"
grep -qE '^ 2  203\.0\.113\.10  [0-9.]+ ms$' <<<"$out" || fail "traceroute (datagram socket): no final hop: $out"
rc=0
out=$(ctl ping acme 203.0.113.99 --count 1 --timeout 6) || rc=$?
echo "$out" | grep From || true
assert_contains "$out" "From 203.0.113.1 icmp_seq=1 Destination Host Unreachable"

# 7. No CAP_NET_RAW and ping_group_range closed: the mediator says what is missing, at start, in
# its environment and in the refusal.
kill -TERM -- "-$(last_bg_pid)"
lab exec lan sysctl -qw net.ipv4.ping_group_range="1 0"
bg lan mediator_noraw capsh --drop=cap_net_raw -- -c \
    "exec '$POSTERN_BIN' mediator --server 203.0.113.10:7000 --name acme --secret-file '$TEST_TMP/secret' --allow 192.168.77.0/24:22"
wait_log "$TEST_TMP/mediator_noraw.log" 'ICMP echo: unavailable: ICMP echo needs CAP_NET_RAW \(missing\) or net.ipv4.ping_group_range to include group 0 \(now 1 0\)'
wait_log "$TEST_TMP/mediator_noraw.log" 'connected to'
wait_listed echo-unavailable
[[ "$out" != *raw-sockets* ]] || fail "a mediator without CAP_NET_RAW reports raw sockets: $out"
rc=0
out=$(ctl ping acme 192.168.77.10 --count 1 2>&1) || rc=$?
echo "$out"
assert_eq 2 "$rc" "ping without ICMP sockets: exit status"
assert_contains "$out" "needs CAP_NET_RAW (missing) or net.ipv4.ping_group_range to include group 0"
kill -TERM -- "-$(last_bg_pid)"

# 8. TUN mode without CAP_NET_ADMIN: the mediator names the missing capability at start.
bg lan mediator_noadmin capsh --drop=cap_net_admin -- -c \
    "exec '$POSTERN_BIN' mediator --server 203.0.113.10:7000 --name delta --secret-file '$TEST_TMP/secret' --tun 192.168.77.70/24"
wait_log "$TEST_TMP/mediator_noadmin.log" 'TUN mode \(--tun\) needs CAP_NET_ADMIN, which this process lacks'
kill -TERM -- "-$(last_bg_pid)"
echo "ok: $TEST_NAME"
