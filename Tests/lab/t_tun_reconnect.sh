#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Fast reconnects in TUN mode: the server's device for a mediator (pts-acme) and its journal file have
# one name per mediator, so an ended session's teardown and the next session's start must not
# overlap (one would undo the other's device and routes). The mediator is SIGKILLed and restarted at
# once, ROUNDS times (default 6): on odd rounds once TUN mode is up, on even ones at a delay into the
# server's start (the server's teardown then waits for its start under way). Then TUN mode must come
# up with exactly one device at each end, pings pass both ways. The same again with the raw LAN
# presence (RAW_ROUNDS, default 8), whose mediator answers TUN at once (no ARP check), so the server's
# start follows the connect closely: SIGKILL at 0, 20, 40, ... ms after the connect. Once all stop,
# lan, lanhost and wan are exactly as before.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

ROUNDS=${ROUNDS:-6}
RAW_ROUNDS=${RAW_ROUNDS:-8}
up_count() { grep -c "TUN mode of mediator 'acme' up" "$TEST_TMP/server.log" 2>/dev/null || true; }
connected_count() { grep -c "mediator 'acme' connected from" "$TEST_TMP/server.log" 2>/dev/null || true; }
# wait_count FUNC N SECONDS: until FUNC prints more than N.
wait_count() {
    local end=$((SECONDS + $3))
    until (($($1) > $2)); do
        ((SECONDS < end)) || fail "$1 stayed at $2 for $3 s: $(tail -5 "$TEST_TMP/server.log")"
        sleep 0.01
    done
}

tun_route_via_server
settled_snapshot lan lanhost wan

start_server server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
server_pid=$(last_bg_pid)
start_mediator mediator0 --tun 192.168.77.50/24 --udp-keepalive 0.5
pid=$(last_bg_pid)
ups=0
for ((i = 1; i <= ROUNDS; i++)); do
    n=$(connected_count)
    if ((i % 2 == 1)); then
        wait_count up_count "$ups" 20
    else
        # Into the start (this session connected just now): the mediator's answer comes after its
        # 1 s ARP check, so the server's start runs about then; step through it.
        sleep "$(awk -v i="$i" 'BEGIN { print (900 + i * 20) / 1000 }')"
    fi
    kill -KILL -- "-$pid"
    wait "$pid" 2>/dev/null || true
    ups=$(up_count)
    start_mediator "mediator$i" --tun 192.168.77.50/24 --udp-keepalive 0.5
    pid=$(last_bg_pid)
    wait_count connected_count "$n" 20
done
# The last session's TUN mode comes up, and stays the only one.
end=$((SECONDS + 20))
until grep -q 'TUN mode up' "$TEST_TMP/mediator$ROUNDS.log" && lab exec wan ip link show pts-acme >/dev/null 2>&1 &&
    [[ $(lab exec wan ip -o addr show dev pts-acme 2>/dev/null) == *192.168.77.50* ]]; do
    ((SECONDS < end)) || fail "TUN mode not up after the last reconnect: $(tail -5 "$TEST_TMP/server.log")"
    sleep 0.1
done
assert_eq 1 "$(lab exec wan ip -o link show | grep -c 'pts-')" "tun devices on the server"
assert_eq 1 "$(lab exec lan ip -o link show | grep -c 'ptm-')" "tun devices on the mediator's host"
assert_eq 1 "$(lab exec lan ip neigh show proxy | grep -c '192.168.77.50')" "proxy entries on the mediator's host"
assert_eq 1 "$(lab exec wan ip route show dev pts-acme | grep -c '192.168.77.0/24')" "routes to the LAN through pts-acme"
out=$(lab exec user ping -c 3 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "user cannot ping 192.168.77.10: $out"
assert_contains "$out" "3 received" "user pings lanhost after $ROUNDS reconnects"
out=$(lab exec lanhost ping -c 3 -i 0.2 -W 2 192.168.77.50 2>&1) || fail "lanhost cannot ping 192.168.77.50: $out"
assert_contains "$out" "3 received" "lanhost pings the remote side after $ROUNDS reconnects"
grep -E 'undoing TUN mode|cleaning up after' "$TEST_TMP/server.log" && fail "the server could not undo a change"
echo "$ROUNDS SIGKILL + restart rounds ($(connected_count) sessions, TUN mode up in $(up_count)): one device at each end, pings both ways"

# The raw LAN presence: no tun device, proxy entry or sysctl on the mediator's host.
sessions=$(connected_count)
ups=$(up_count)
for ((i = 0; i <= RAW_ROUNDS; i++)); do
    n=$(connected_count)
    kill -KILL -- "-$pid"
    wait "$pid" 2>/dev/null || true
    start_mediator "raw$i" --tun 192.168.77.50/24 --lan-presence raw --udp-keepalive 0.5
    pid=$(last_bg_pid)
    wait_count connected_count "$n" 20
    ((i < RAW_ROUNDS)) && sleep "$(printf '0.%03d' $((i * 20)))"
done
end=$((SECONDS + 20))
until grep -q 'TUN mode up' "$TEST_TMP/raw$RAW_ROUNDS.log" && lab exec wan ip link show pts-acme >/dev/null 2>&1 &&
    [[ $(lab exec wan ip -o addr show dev pts-acme 2>/dev/null) == *192.168.77.50* ]]; do
    ((SECONDS < end)) || fail "raw TUN mode not up after the last reconnect: $(tail -5 "$TEST_TMP/server.log")"
    sleep 0.1
done
assert_eq 1 "$(lab exec wan ip -o link show | grep -c 'pts-')" "tun devices on the server (raw)"
assert_eq 0 "$(lab exec lan ip -o link show | grep -c 'ptm-')" "tun devices on the mediator's host (raw)"
assert_eq 1 "$(lab exec wan ip route show dev pts-acme | grep -c '192.168.77.0/24')" "routes to the LAN through pts-acme (raw)"
out=$(lab exec user ping -c 3 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "raw: user cannot ping 192.168.77.10: $out"
assert_contains "$out" "3 received" "user pings lanhost after $RAW_ROUNDS raw reconnects"
grep -E 'undoing TUN mode|cleaning up after' "$TEST_TMP/server.log" && fail "the server could not undo a change"
echo "$RAW_ROUNDS raw SIGKILL + restart rounds ($(($(connected_count) - sessions)) sessions, TUN mode up in $(($(up_count) - ups))): one device on the server, pings"

kill -TERM -- "-$pid"
wait "$pid" 2>/dev/null || true
kill -TERM -- "-$server_pid"
wait "$server_pid" 2>/dev/null || true
assert_as_before "after all stopped" lan lanhost wan
echo "PASS"
