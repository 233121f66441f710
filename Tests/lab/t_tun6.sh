#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# TUN mode with IPv6 (docs/protocol.md §10.6) beside IPv4, through the real NAT: the mediator in lan
# offers 192.168.77.50/24 and fd00:77::50/64; the server in wan puts both on pts-acme and routes both
# LAN prefixes to it; user routes the LAN's prefixes through wan, which forwards and masquerades
# (README, "IPv6 in TUN mode"). Then: user pings and curls lanhost over IPv6, lanhost pings the
# remote IPv6 address; a 1,500-byte ping6 gets "packet too big, mtu 1400" (from wan's kernel, and
# from postern itself once pts-acme's MTU is raised by hand); packets to a denied address and from a
# forged source are dropped at the mediator and its counters show up in `ctl mediators` and
# /metrics (TUN_STATS); after SIGKILL of the mediator and a restart it works again; and once all stop,
# lan, lanhost and wan are exactly as before (links, addresses, IPv4 and IPv6 routes, proxy ARP and
# NDP entries, the IPv4 and IPv6 sysctls).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# mediator NAME EXPR: a Python expression over mediator NAME's entry `m` in `ctl mediators --json`.
mediator() {
    ctl mediators --json | python3 -c "import json,sys
m = next((m for m in json.load(sys.stdin) if m['name'] == sys.argv[1]), {})
print($2)" "$1"
}
tun() { mediator acme "m.get('tun', {}).get('$1', '')"; }
# at_mediator REASON: the mediator's own drops for REASON, as its TUN_STATS reported them.
at_mediator() { mediator acme "(m.get('tun', {}).get('mediator') or {}).get('dropped', {}).get('$1', 0)"; }
wait_tun_up() {
    local end=$((SECONDS + $1))
    until [[ $(tun status 2>/dev/null) == up ]]; do
        ((SECONDS < end)) || fail "TUN mode not up within $1 s: $(ctl mediators 2>&1)"
        sleep 0.2
    done
}
# wait_at_mediator REASON MIN SECONDS
wait_at_mediator() {
    local end=$((SECONDS + $3))
    until (($(at_mediator "$1") >= $2)); do
        ((SECONDS < end)) || fail "the mediator's '$1' drops did not reach $2 within $3 s: $(ctl mediators 2>&1)"
        sleep 0.2
    done
}
check_traffic() {
    local out sum
    out=$(lab exec user ping -6 -c 3 -i 0.2 -W 2 fd00:77::10 2>&1) || fail "$1: user cannot ping6 fd00:77::10: $out"
    assert_contains "$out" "3 received" "$1: user pings lanhost over IPv6"
    out=$(lab exec lanhost ping -6 -c 3 -i 0.2 -W 2 fd00:77::50 2>&1) || fail "$1: lanhost cannot ping6 fd00:77::50: $out"
    assert_contains "$out" "3 received" "$1: lanhost pings the remote IPv6 address"
    out=$(lab exec user ping -c 2 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "$1: IPv4 beside IPv6: $out"
    sum=$(lab exec user curl -6 -sS --max-time 60 "http://[fd00:77::10]:8080/file.bin" | sha256sum | cut -d' ' -f1) ||
        fail "$1: curl -6 failed; $(ctl mediators | grep -E 'tun|datagrams')"
    assert_eq "$WANT_SUM" "$sum" "$1: sha256 of the file fetched over IPv6 by user"
    echo "$1: ping6 both ways, IPv4 ping, a 5 MB curl -6 (sha256 ok)"
}

# The operator's part on the server host and the user (README, "TUN mode" and "IPv6 in TUN mode").
tun_route_via_server
lab exec user ip -6 route add fd00:77::/64 via 2001:db8:113::10
lab exec wan sysctl -qw net.ipv6.conf.all.forwarding=1
lab exec wan nft -f - <<'NFT'
table ip6 postern_tun6 {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "pts-*" masquerade
    }
}
NFT
mkdir -p "$TEST_TMP/www"
head -c 5M /dev/urandom >"$TEST_TMP/www/file.bin"
WANT_SUM=$(sha256sum "$TEST_TMP/www/file.bin" | cut -d' ' -f1)
# Settle first: a fresh lab's addresses sit in duplicate address detection for a moment (t_tun.sh).
settled_snapshot lan lanhost wan
assert_contains "$before" "net.ipv6.conf.all.forwarding = 0" "lan's IPv6 forwarding is off before (the test checks it is restored)"
bg lanhost http python3 -m http.server 8080 --bind fd00:77::10 --directory "$TEST_TMP/www"
wait_tcp lanhost fd00:77::10 8080

start_server server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
server_pid=$(last_bg_pid)

# 0. A LAN host already has the remote address: the mediator asks the LAN first (a neighbour
# solicitation through the kernel) and refuses TUN mode in words instead of stealing the address.
lab exec lanhost ip -6 addr add fd00:77::50/64 dev eth0 nodad
start_mediator taken --tun fd00:77::50/64 --udp-keepalive 0.5
taken_pid=$(last_bg_pid)
end=$((SECONDS + 20))
until [[ $(tun status 2>/dev/null) =~ ^refused:.*fd00:77::50\ is\ in\ use\ on\ eth0 ]]; do
    ((SECONDS < end)) || fail "TUN mode was not refused for an address lanhost holds: $(ctl mediators 2>&1)"
    sleep 0.2
done
echo "address in use: $(tun status | cut -c1-140)"
lab exec lan ip link show ptm-acme >/dev/null 2>&1 && fail "ptm-acme exists although TUN mode was refused"
kill -TERM -- "-$taken_pid"
wait "$taken_pid" 2>/dev/null || true
lab exec lanhost ip -6 addr del fd00:77::50/64 dev eth0

start_mediator mediator --tun 192.168.77.50/24 --tun fd00:77::50/64 --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_mediator acme
wait_tun_up 15
echo "TUN mode up: $(ctl mediators | grep '  tun ')"
assert_eq "fd00:77::50/64" "$(tun secondAddress)" "the second remote address in ctl mediators"
grep -q 'fd00:77::50 dev eth0' <<<"$(lab exec lan ip -6 neigh show proxy)" || fail "no proxy NDP entry in lan: $(lab exec lan ip -6 neigh show proxy)"
grep -q '192.168.77.50 dev eth0' <<<"$(lab exec lan ip neigh show proxy)" || fail "no proxy ARP entry in lan"
assert_eq "1" "$(lab exec lan sysctl -n net.ipv6.conf.eth0.proxy_ndp)" "lan eth0 proxy_ndp while up"
assert_eq "1" "$(lab exec lan sysctl -n net.ipv6.conf.all.forwarding)" "lan IPv6 forwarding while up"
grep -q 'fd00:77::50/128' <<<"$(lab exec wan ip -6 addr show dev pts-acme)" || fail "pts-acme lacks fd00:77::50/128"
grep -q '^fd00:77::/64' <<<"$(lab exec wan ip -6 route show dev pts-acme)" || fail "wan has no route to fd00:77::/64 via pts-acme"
grep -q 'fe80' <<<"$(lab exec wan ip -6 addr show dev pts-acme)" && fail "pts-acme has a link-local address (addr_gen_mode not none)"

# 1. IPv6 both ways, a curl, IPv4 beside it.
check_traffic "dual stack"

# 2. Packet too big: a 1,500-byte ping6 from user meets pts-acme's MTU of 1,400 in wan's kernel.
out=$(lab exec user ping -6 -c 2 -i 0.3 -W 2 -M do -s 1452 fd00:77::10 2>&1 || true)
[[ $out =~ (mtu=1400|mtu = 1400) ]] || fail "a 1,500-byte ping6 did not get 'packet too big, mtu 1400': $out"
echo "packet too big (wan's kernel): $(grep -m1 -E 'mtu' <<<"$out")"
# 2b. pts-acme's MTU raised by hand: the 1,500-byte packet reaches postern, which answers it with its
# own ICMPv6 "packet too big" in the name of the destination. A new destination (lan's fd00:77::2),
# so user has no cached path MTU for it.
lab exec wan ip link set pts-acme mtu 1500
errors_before=$(tun fragmentationNeeded)
out=$(lab exec user ping -6 -c 2 -i 0.3 -W 2 -M do -s 1452 fd00:77::2 2>&1 || true)
lab exec wan ip link set pts-acme mtu 1400
[[ $out =~ (mtu=1400|mtu = 1400) ]] || fail "postern did not answer a 1,500-byte IPv6 packet with 'packet too big, mtu 1400': $out"
(($(tun fragmentationNeeded) > errors_before)) || fail "the server's error counter did not grow: $(ctl mediators --json)"
echo "packet too big (postern): $(grep -m1 -E 'mtu' <<<"$out"); errors sent $(tun fragmentationNeeded)"

# 3. The mediator's own drops reach ctl mediators (TUN_STATS): from lan, packets routed into
# ptm-acme to an address the policy denies; from lanhost, packets to the remote address from a
# source outside the allowed prefixes (a forged one).
lab exec lan ip -6 route add fd00:99::/64 dev ptm-acme
lab exec lan ping -6 -c 3 -i 0.2 -W 1 fd00:99::1 >/dev/null 2>&1 && fail "a ping6 to a denied address got an answer"
lab exec lan ip -6 route del fd00:99::/64 dev ptm-acme
wait_at_mediator destination 3 10
# A fresh neighbour entry for fd00:77::50 first, so the forged packets need no solicitation.
lab exec lanhost ping -6 -c 1 -W 2 fd00:77::50 >/dev/null 2>&1 || fail "lanhost cannot reach fd00:77::50 before the forged ping"
lab exec lanhost ip -6 addr add fd00:99::10/128 dev eth0 nodad
lab exec lanhost ping -6 -c 3 -i 0.2 -W 1 -I fd00:99::10 fd00:77::50 >/dev/null 2>&1 && fail "a forged source got an answer"
lab exec lanhost ip -6 addr del fd00:99::10/128 dev eth0
wait_at_mediator source 3 10
text=$(ctl mediators)
grep -E '  tun at the mediator: .*dropped .*destination [0-9]+' <<<"$text" >/dev/null || fail "ctl mediators text lacks the mediator's drops: $text"
echo "mediator drops in ctl mediators: $(grep '  tun at the mediator' <<<"$text")"
token=$(cat "$POSTERN_STATE_DIR/admin.token")
metrics=$(lab exec wan curl -sS --max-time 5 -H "Authorization: Bearer $token" http://127.0.0.1:7070/metrics)
grep -E '^postern_mediator_tun_dropped_total\{.*end="mediator".*reason="destination".*\} [3-9]' <<<"$metrics" >/dev/null ||
    grep -E '^postern_mediator_tun_dropped_total\{.*reason="destination".*end="mediator".*\} [3-9]' <<<"$metrics" >/dev/null ||
    fail "/metrics lacks the mediator's destination drops: $(grep tun <<<"$metrics")"
echo "/metrics: $(grep -E '^postern_mediator_tun_dropped_total.*mediator' <<<"$metrics" | tr '\n' ' ')"

# 3b. A second mediator in lanhost, IPv6 only, whose fd00:77::/64 overlaps acme's: the server refuses
# it and tells it so (TUN_CLOSE), and it undoes its TUN mode at once while its session goes on.
bg lanhost beta "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name beta --secret-file "$TEST_TMP/secret" \
    --tun fd00:77::60/64 --udp-keepalive 0.5
beta_pid=$(last_bg_pid)
wait_log "$TEST_TMP/beta.log" 'the server ended TUN mode: .*overlaps' 20
wait_log "$TEST_TMP/beta.log" 'TUN mode down' 10
lab exec lanhost ip link show ptm-beta >/dev/null 2>&1 && fail "ptm-beta still exists after TUN_CLOSE"
[[ -z $(lab exec lanhost ip -6 neigh show proxy) ]] || fail "beta left a proxy NDP entry after TUN_CLOSE"
[[ -n $(mediator beta "m['session']") ]] || fail "beta's session did not survive TUN_CLOSE"
echo "overlap: beta refused, told, and undid its TUN mode: $(grep -m1 'the server ended TUN mode' "$TEST_TMP/beta.log" | sed 's/.*the server/the server/' | cut -c1-120)"
kill -TERM -- "-$beta_pid"
wait "$beta_pid" 2>/dev/null || true
out=$(lab exec user ping -6 -c 2 -i 0.2 -W 3 fd00:77::10 2>&1) || fail "acme after beta's refusal: $out"

# 4. SIGKILL of the mediator: what it configured stays until the restart undoes it; then it works.
kill -KILL -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
echo "after SIGKILL: $(lab exec lan ip -6 neigh show proxy | wc -l) IPv6 proxy entries, IPv6 forwarding $(lab exec lan sysctl -n net.ipv6.conf.all.forwarding)"
start_mediator mediator2 --tun 192.168.77.50/24 --tun fd00:77::50/64 --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_log "$TEST_TMP/mediator2.log" 'TUN mode up' 20
wait_tun_up 20
assert_eq "1" "$(lab exec lan ip -6 neigh show proxy | grep -c 'fd00:77::50')" "IPv6 proxy entries after the restart"
grep -E 'undid [0-9]+ TUN mode changes' "$TEST_TMP/mediator2.log" || fail "the restarted mediator did not undo the killed run's changes"
check_traffic "after restart"

# 5. Both stop (SIGTERM): nothing TUN mode made is left in lan, lanhost or wan.
kill -TERM -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
kill -TERM -- "-$server_pid"
wait "$server_pid" 2>/dev/null || true
assert_as_before "lan/lanhost/wan after the stop" lan lanhost wan
echo "after stop: links, addresses, IPv4/IPv6 routes, proxy ARP/NDP entries and sysctls as before"
echo "ok: $TEST_NAME"
