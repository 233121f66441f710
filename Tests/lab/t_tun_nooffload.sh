#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# TUN mode with one end offloading and the other not (--tun-offload off), both ways round, through the
# real NAT and the UDP channel: the packets between the ends are plain either way, so ping both ways,
# a 20 MB curl (sha256) and iperf3 TCP both ways and UDP must work whichever end cuts and merges
# super-packets. `ctl mediators` (and --json) must show each end's device as it was opened: "off" at
# the end told so, the kernel's offloads at the other, which merges the segments it writes
# (coalescedWrites grows there; TUN_STATS carries the mediator's). Once all stop, lan, lanhost and wan
# are as before.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# offload END KEY: a field of END's device view (END: server or mediator) in `ctl mediators --json`.
offload() {
    ctl mediators --json | python3 -c "import json,sys
m = next((m for m in json.load(sys.stdin) if m['name'] == 'acme'), {})
t = m.get('tun', {})
o = (t.get('offload') if sys.argv[1] == 'server' else (t.get('mediator') or {}).get('offload')) or {}
print(o.get(sys.argv[2], ''))" "$1" "$2"
}
wait_tun_up() {
    local end=$((SECONDS + $1))
    until [[ $(ctl mediators --json 2>/dev/null | python3 -c "import json,sys
print(next((m.get('tun', {}).get('status', '') for m in json.load(sys.stdin) if m['name'] == 'acme'), ''))") == up ]]; do
        ((SECONDS < end)) || fail "TUN mode not up within $1 s: $(ctl mediators 2>&1)"
        sleep 0.2
    done
}
wait_udp() {
    local end=$((SECONDS + $1))
    until ctl mediators 2>/dev/null | grep -q 'datagrams via udp'; do
        ((SECONDS < end)) || fail "the UDP channel did not come up within $1 s: $(ctl mediators 2>&1)"
        sleep 0.2
    done
}
# wait_offload END KEY REGEX SECONDS: the mediator's end arrives with TUN_STATS, every 2 s.
wait_offload() {
    local end=$((SECONDS + $4))
    until [[ $(offload "$1" "$2" 2>/dev/null) =~ $3 ]]; do
        ((SECONDS < end)) || fail "$1's device: $2 is '$(offload "$1" "$2")', not /$3/, within $4 s: $(ctl mediators 2>&1)"
        sleep 0.3
    done
}

# round NAME SERVER_OFFLOAD MEDIATOR_OFFLOAD: start both ends so, carry the traffic, check the views.
round() {
    local name=$1 server_offload=$2 mediator_offload=$3 out sum server_pid mediator_pid on off
    start_server "server-$name" --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun --tun-offload "$server_offload"
    server_pid=$(last_bg_pid)
    start_mediator "mediator-$name" --tun 192.168.77.50/24 --udp-keepalive 0.5 --tun-offload "$mediator_offload"
    mediator_pid=$(last_bg_pid)
    wait_mediator acme 15
    wait_tun_up 15
    wait_udp 10
    [[ $server_offload == off ]] && on=mediator off=server || on=server off=mediator
    # The end told "off" opened its device without a virtio-net header; the log line says so too.
    wait_offload "$off" asked '^False$' 10
    wait_offload "$off" offloads '^none$' 10
    grep -q 'offloads none' "$TEST_TMP/$off-$name.log" || fail "$name: the $off's log does not say 'offloads none'"
    wait_offload "$on" asked '^True$' 10

    out=$(lab exec user ping -c 3 -i 0.2 -W 2 192.168.77.10 2>&1) || fail "$name: user cannot ping 192.168.77.10: $out"
    assert_contains "$out" "3 received" "$name: user pings lanhost"
    out=$(lab exec lanhost ping -c 3 -i 0.2 -W 2 192.168.77.50 2>&1) || fail "$name: lanhost cannot ping 192.168.77.50: $out"
    assert_contains "$out" "3 received" "$name: lanhost pings the remote side"
    sum=$(lab exec user curl -sS --max-time 60 http://192.168.77.10:8080/big.bin | sha256sum | cut -d' ' -f1) ||
        fail "$name: curl of the 20 MB file failed; $(ctl mediators | grep -E 'tun|datagrams')"
    assert_eq "$WANT_SUM" "$sum" "$name: sha256 of the 20 MB file fetched by user"
    out=$(lab exec user iperf3 -c 192.168.77.10 -p 5201 -t 3 -f m 2>&1) || fail "$name: iperf3 TCP user -> lanhost: $out"
    echo "$name: iperf3 TCP user -> lanhost: $(grep -E 'receiver' <<<"$out" | tail -1)"
    out=$(lab exec user iperf3 -c 192.168.77.10 -p 5201 -t 3 -f m -R 2>&1) || fail "$name: iperf3 TCP lanhost -> user: $out"
    echo "$name: iperf3 TCP lanhost -> user: $(grep -E 'receiver' <<<"$out" | tail -1)"
    out=$(lab exec user iperf3 -c 192.168.77.10 -p 5201 -u -b 50M -l 1200 -t 2 -f m 2>&1) || fail "$name: iperf3 UDP: $out"
    grep -qE '[0-9.]+ Mbits/sec .* [0-9]+/[0-9]+ \(' <<<"$out" || fail "$name: iperf3 UDP printed no result: $out"
    echo "$name: iperf3 UDP 50 Mbit/s user -> lanhost: $(grep -E 'receiver' <<<"$out" | tail -1)"

    # The offloading end merged what it wrote into its device (the curl and iperf3 streams toward it).
    wait_offload "$on" coalescedWrites '^[1-9][0-9]*$' 10
    wait_offload "$off" coalescedWrites '^0$' 10
    wait_offload "$off" superPacketsRead '^0$' 10
    out=$(ctl mediators)
    grep -q "tun device at the $off: offloads off (--tun-offload off)" <<<"$out" || fail "$name: ctl mediators: $out"
    grep -qE "tun device at the $on: offloads [a-z0-9,]+  super-packets read [0-9]+  merged writes [1-9]" <<<"$out" ||
        fail "$name: ctl mediators: $out"
    echo "$name: $(grep 'tun device at the server' <<<"$out" | sed 's/^ *//')"
    echo "$name: $(grep 'tun device at the mediator' <<<"$out" | sed 's/^ *//')"

    kill -TERM -- "-$mediator_pid"
    wait "$mediator_pid" 2>/dev/null || true
    kill -TERM -- "-$server_pid"
    wait "$server_pid" 2>/dev/null || true
}

tun_route_via_server
mkdir -p "$TEST_TMP/www"
head -c 20M /dev/urandom >"$TEST_TMP/www/big.bin"
WANT_SUM=$(sha256sum "$TEST_TMP/www/big.bin" | cut -d' ' -f1)
bg lanhost http python3 -m http.server 8080 --bind 192.168.77.10 --directory "$TEST_TMP/www"
bg lanhost iperf iperf3 -s -B 192.168.77.10 -p 5201
wait_tcp lanhost 192.168.77.10 8080
settled_snapshot lan lanhost wan

# A mediator that is not told "on" or "off" is refused at once, in words.
out=$(lab exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/secret" \
    --tun 192.168.77.50/24 --tun-offload maybe 2>&1) && fail "--tun-offload maybe was accepted"
assert_contains "$out" "--tun-offload 'maybe': give on or off" "a bad --tun-offload"

round server-off off on
round mediator-off on off

assert_as_before "lan/lanhost/wan after the stop" lan lanhost wan
echo "after stop: links, addresses, routes, proxy neighbours and sysctls as before"
echo "ok: $TEST_NAME"
