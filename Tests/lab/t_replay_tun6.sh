#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `postern replay --packets` (TUN mode) over IPv6, through the real tunnel: the mediator is given a
# second, IPv6 TUN address (`--tun 192.168.77.50/24 --tun fd00:77::50/64`), the server's pts-acme gets
# fd00:77::50 and routes fd00:77::/64 to the mediator. Each capture's IPv6 initiator packets,
# rewritten to fd00:77::50 -> fd00:77::10 (TCP, UDP and ICMPv6 checksums over the IPv6 pseudo
# header, ICMPv6 errors' quotes), are injected on pts-acme in wan and captured live on lanhost's eth0;
# the responder's, rewritten the other way, are injected routed in lanhost (an IPv6 raw socket leaves
# them as sent) and captured on pts-acme. One router between (lan): the hop limit arrives one lower
# and every other byte as sent (SYNs' MSS may arrive clamped to the MTU less 60). As in t_replay_tun,
# nft rules keep both hosts' TCP from answering what is replayed to them. Captures: ping-any.pcap's
# IPv6 echo (its IPv4 half reported skipped), and from third-party/ icmp6-traceroute, ping-v4-v6,
# dns-ipv6-frag, ftp-ipv6.
# Abuse: the wrong hop count is reported at the hop limit's byte (7); IPv6 injection on an Ethernet
# interface is refused in words.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
find_postern
postern_setup

start_server server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
server_pid=$(last_bg_pid)
start_mediator mediator --tun 192.168.77.50/24 --tun fd00:77::50/64 --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_mediator acme
end=$((SECONDS + 15))
until lab exec wan ip -6 addr show dev pts-acme 2>/dev/null | grep -q 'fd00:77::50' && lab exec lan ip link show ptm-acme >/dev/null 2>&1; do
    kill -0 "$mediator_pid" 2>/dev/null || fail "the mediator with an IPv6 --tun stopped: $(tail -5 "$TEST_TMP/mediator.log")"
    ((SECONDS < end)) || fail "TUN mode with IPv6 not up within 15 s: $(tail -5 "$TEST_TMP/mediator.log")"
    sleep 0.2
done
# Neighbours resolved on the way (lanhost's for fd00:77::50, lan's for lanhost) before anything is timed.
lab exec wan ping -6 -c 1 -W 3 -I fd00:77::50 fd00:77::10 >/dev/null || fail "wan cannot ping lanhost over IPv6 through TUN mode"
lab exec lanhost nft -f - <<'NFT'
table inet replay_quiet {
    chain input { type filter hook input priority 0; policy accept; ip6 saddr fd00:77::50 meta l4proto tcp counter drop; }
}
NFT
lab exec wan nft -f - <<'NFT'
table inet replay_quiet {
    chain input { type filter hook input priority 0; policy accept; ip6 saddr fd00:77::10 meta l4proto tcp counter drop; }
}
NFT

REWRITE=INITIATOR=fd00:77::50,RESPONDER=fd00:77::10
# one_way CAPTURE DIRECTION [extra capture-side args]: sets OUT and RC.
one_way() {
    local capture=$1 dir=$2 log pid cns iface ins inject
    shift 2
    if [[ $dir == initiator ]]; then
        cns=lanhost iface=eth0 ins=wan inject=(--inject-on pts-acme)
    else
        cns=wan iface=pts-acme ins=lanhost inject=()
    fi
    log="cap-$(basename "$capture")-$dir-$RANDOM"
    bg "$cns" "$log" "$POSTERN_BIN" replay "$capture" --packets "$dir" --capture-on "$iface" --rewrite "$REWRITE" --timeout 10 "$@"
    pid=$(last_bg_pid)
    wait_log "$TEST_TMP/$log.log" '^replay capture: listening' 15
    replay_inject "$ins" "$capture" "$dir" "${inject[@]}" --rewrite "$REWRITE"
    RC=0
    wait "$pid" || RC=$?
    OUT=$(grep -v '^replay capture: listening' "$TEST_TMP/$log.log")
}

total_ok=0
replay_both() {
    local name dir
    name=$(basename "$1")
    for dir in initiator responder; do
        one_way "$1" "$dir"
        ((RC == 0)) || fail "$name, the $dir's packets: exit status $RC:
$OUT"
        echo "$name, $dir's packets: $(tail -n 1 <<<"$OUT")"
        assert_contains "$(tail -n 1 <<<"$OUT")" " 0 mismatched" "$name ($dir)"
        grep -E '^flow .* skipped' <<<"$OUT" | sed 's/^/    /' | cut -c1-150 || true
        total_ok=$((total_ok + $(grep -cE '^flow [0-9]+ (icmp|udp|tcp) .* ok' <<<"$OUT" || true)))
    done
}

replay_both "$LAB_REPO/captures/ping-any.pcap"
grep -qE '^flow [0-9]+ icmp .* ok: responder 3/3 packets' <<<"$OUT" || fail "ping-any: the three IPv6 echo replies were not all delivered: $OUT"
grep -qE "skipped \(IPv4: the lab's addresses \(--rewrite\) are IPv6" <<<"$OUT" || fail "ping-any: the IPv4 half not reported skipped"
if [[ -e "$LAB_REPO/captures/third-party/MANIFEST.tsv" ]]; then
    for name in icmp6-traceroute ping-v4-v6 dns-ipv6-frag ftp-ipv6; do
        [[ -e "$LAB_REPO/captures/third-party/$name.pcap" ]] && replay_both "$LAB_REPO/captures/third-party/$name.pcap"
    done
else
    echo "note: ../shared/captures is absent beside the clone: third-party captures skipped"
fi
((total_ok > 0)) || fail "no IPv6 conversation was delivered"
echo "IPv6 conversations delivered packet-identical (both directions counted): $total_ok"

# Abuse: two routers expected where there is one: the hop limit's byte (7) is named.
one_way "$LAB_REPO/captures/ping-any.pcap" initiator --hops 2
assert_eq 1 "$RC" "exit status with the wrong hop count"
assert_contains "$OUT" "first difference at byte 7" "the hop limit's offset named"
rc=0
out=$(lab exec lanhost "$POSTERN_BIN" replay "$LAB_REPO/captures/ping-any.pcap" --packets responder --inject --inject-on eth0 --rewrite "$REWRITE" 2>&1) || rc=$?
assert_eq 2 "$rc" "exit status of IPv6 injection on Ethernet"
assert_contains "$out" "inject it routed" "the way that works named"

lab exec lanhost nft delete table inet replay_quiet
lab exec wan nft delete table inet replay_quiet
kill -TERM -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
kill -TERM -- "-$server_pid"
wait "$server_pid" 2>/dev/null || true
lab exec wan ip link show pts-acme >/dev/null 2>&1 && fail "pts-acme left in wan"
lab exec lan ip link show ptm-acme >/dev/null 2>&1 && fail "ptm-acme left in lan"
echo "ok: $TEST_NAME"
