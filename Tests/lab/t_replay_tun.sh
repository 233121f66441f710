#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `postern replay --packets` (TUN mode) through the real tunnel: the server in wan holds pts-acme with
# 192.168.77.50 (the remote side's LAN address), the mediator in lan forwards between ptm-acme and the
# LAN. Each capture's initiator packets, rewritten to 192.168.77.50 -> 192.168.77.10 (checksums and
# ICMP errors' quoted headers too), are injected with a raw socket in wan and captured live on
# lanhost's eth0; the responder's, rewritten to 192.168.77.10 -> 192.168.77.50, are injected in
# lanhost and captured on pts-acme in wan. Between the two only lan routes (one hop: TTL - 1), so
# every other byte must arrive as sent, fragments and ICMP errors included, except the MSS option of
# TCP SYNs, which both tunnel ends clamp to the MTU less 40: it may arrive lowered to exactly that,
# with a valid TCP checksum. Captures: ping-any.pcap (ICMP echo; its IPv6 half is reported skipped),
# frag-ping-udp.pcap (IPv4 fragments of echo and UDP, ICMP port unreachable quoting them), the TCP
# conversations of tcp-refused, tcp-rst and dns-dig (MX over TCP), and every other capture of
# captures/ and third-party/ (TCP, UDP, ICMP; what does not fit the MTU is reported skipped).
# The two hosts own the rewritten addresses, so their kernels would answer injected TCP segments with
# RSTs (and SYN-ACKs with RSTs the other way): an nft rule on each receiving host's input drops TCP
# from the other replay address after the capture has seen it (AF_PACKET taps come before netfilter),
# and its counter proves the segments got there.
# Abuse: a capture side told the wrong hop count reports a mismatch at the TTL's byte (8) and exits 1;
# one told another MTU expects another MSS clamp and reports the SYN's MSS option (byte 42);
# packets nobody planned arriving (the initiator's packets injected twice) are counted and exit 1;
# an injector without CAP_NET_RAW fails in words; a truncated capture is refused naming the file; an
# IPv6, missing or doubled --rewrite address is refused.
# After the server and mediator stop, no tun device is left.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

start_server server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
server_pid=$(last_bg_pid)
start_mediator mediator --tun 192.168.77.50/24 --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
wait_mediator acme
end=$((SECONDS + 15))
until lab exec wan ip link show pts-acme 2>/dev/null | grep -q 'UP' && lab exec lan ip link show ptm-acme >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "TUN mode not up within 15 s"
    sleep 0.2
done
# The first packets after TUN mode comes up may still meet an unresolved neighbour (lan asks for
# lanhost's MAC): one ping settles it.
lab exec wan ping -c 1 -W 3 -I 192.168.77.50 192.168.77.10 >/dev/null || fail "wan cannot ping lanhost through TUN mode"
# Neither host's TCP answers what is replayed to it (see above); removed at the end.
lab exec lanhost nft -f - <<'NFT'
table inet replay_quiet {
    chain input { type filter hook input priority 0; policy accept; ip saddr 192.168.77.50 meta l4proto tcp counter drop; }
}
NFT
lab exec wan nft -f - <<'NFT'
table inet replay_quiet {
    chain input { type filter hook input priority 0; policy accept; ip saddr 192.168.77.10 meta l4proto tcp counter drop; }
}
NFT

REWRITE=INITIATOR=192.168.77.50,RESPONDER=192.168.77.10
# one_way CAPTURE DIRECTION CAPTURE_NS IFACE INJECT_NS INJECT_IFACE [extra capture-side args] — sets
# OUT and RC. Injection is on an interface (AF_PACKET), byte for byte: a routed raw socket would have
# the kernel give packets recorded with IP ID 0 an ID of its own.
one_way() {
    local capture=$1 dir=$2 cns=$3 iface=$4 ins=$5 iiface=$6 log pid
    shift 6
    log="cap-$(basename "$capture")-$dir-$RANDOM"
    bg "$cns" "$log" "$POSTERN_BIN" replay "$capture" --packets "$dir" --capture-on "$iface" --rewrite "$REWRITE" --timeout 10 "$@"
    pid=$(last_bg_pid)
    wait_log "$TEST_TMP/$log.log" '^replay capture: listening' 15
    replay_inject "$ins" "$capture" "$dir" --inject-on "$iiface" --rewrite "$REWRITE"
    if [[ -n "${INJECT_TWICE:-}" ]]; then
        lab exec "$ins" "$POSTERN_BIN" replay "$capture" --packets "$dir" --inject --inject-on "$iiface" --rewrite "$REWRITE"
    fi
    RC=0
    wait "$pid" || RC=$?
    OUT=$(grep -v '^replay capture: listening' "$TEST_TMP/$log.log")
}

total_ok=0
tcp_ok=0
replay_both() {
    local capture=$1 name dir
    name=$(basename "$capture")
    for dir in initiator responder; do
        if [[ $dir == initiator ]]; then
            one_way "$capture" initiator lanhost eth0 wan pts-acme
        else
            one_way "$capture" responder wan pts-acme lanhost eth0
        fi
        ((RC == 0)) || fail "$name, the $dir's packets: exit status $RC:
$OUT"
        summary=$(tail -n 1 <<<"$OUT")
        echo "$name, $dir's packets: $summary"
        assert_contains "$summary" " 0 mismatched" "$name ($dir)"
        grep -E '^flow .* skipped' <<<"$OUT" | sed 's/^/    /' | cut -c1-150 || true
        total_ok=$((total_ok + $(grep -cE '^flow [0-9]+ (icmp|udp|tcp) .* ok' <<<"$OUT" || true)))
        tcp_ok=$((tcp_ok + $(grep -cE '^flow [0-9]+ tcp .* ok' <<<"$OUT" || true)))
    done
}

# ping-any: the IPv4 echo arrives packet-identical both ways; the IPv6 half is skipped with the reason.
replay_both "$LAB_REPO/captures/ping-any.pcap"
grep -qE 'flow 1 icmp 203.0.113.20:0 -> 203.0.113.10:0 ok: responder 3/3 packets' <<<"$OUT" ||
    fail "ping-any: the three echo replies were not all delivered: $OUT"
grep -qE "skipped \(IPv6: the lab's addresses \(--rewrite\) are IPv4" <<<"$OUT" || fail "ping-any: IPv6 flows not reported as skipped for IPv6"

# Fragments (the first fragment carries the ICMP or UDP header, the second only data) and the ICMP
# errors quoting a fragmented and a whole UDP datagram.
replay_both "$LAB_REPO/captures/frag-ping-udp.pcap"
grep -qE '^flow 1 icmp .* ok: responder 6/6 packets' <<<"$OUT" ||
    fail "frag-ping-udp: the 4 reply fragments and 2 port unreachables were not all delivered: $OUT"

# TCP: a refused connection (SYN, RST), one that ends in RST after data, and dig's MX query over TCP;
# each SYN carried an MSS of 1460 and arrives clamped to 1360.
for name in tcp-refused tcp-rst; do
    replay_both "$LAB_REPO/captures/$name.pcap"
    grep -qE '^flow 1 tcp .* ok: responder [1-9][0-9]*/[1-9][0-9]* packets' <<<"$OUT" || fail "$name: the TCP conversation was not delivered: $OUT"
done
replay_both "$LAB_REPO/captures/dns-dig.pcap"
grep -qE '^flow [0-9]+ tcp .* ok: responder [1-9][0-9]*/[1-9][0-9]* packets' <<<"$OUT" || fail "dns-dig: dig's TCP query was not delivered: $OUT"

# Then every other capture, the project's and third-party/ (read-only; absent: skipped with a note):
# what TUN mode carries must arrive packet-identical, the rest is reported as skipped with the reason.
others=()
for capture in "$LAB_REPO"/captures/*.pcap; do
    case $(basename "$capture") in ping-any.pcap | frag-ping-udp.pcap | tcp-refused.pcap | tcp-rst.pcap | dns-dig.pcap) ;; *) others+=("$capture") ;; esac
done
if [[ -e "$LAB_REPO/captures/third-party/MANIFEST.tsv" ]]; then
    others+=("$LAB_REPO"/captures/third-party/*.pcap*)
else
    echo "note: ../shared/captures is absent beside the clone: third-party captures skipped"
fi
for capture in "${others[@]}"; do replay_both "$capture"; done
echo "conversations delivered packet-identical (both directions counted): $total_ok, of them TCP: $tcp_ok"
for ns in lanhost wan; do
    dropped=$(lab exec "$ns" nft list chain inet replay_quiet input | grep -oE 'counter packets [0-9]+' | grep -oE '[0-9]+$')
    ((dropped > 0)) || fail "no replayed TCP segment reached $ns's input (counter $dropped)"
    echo "$ns: $dropped replayed TCP segments arrived and were kept from its TCP"
done

one_way "$LAB_REPO/captures/frag-ping-udp.pcap" responder wan pts-acme lanhost eth0 --json
((RC == 0)) || fail "--json run: exit status $RC: $OUT"
python3 -c 'import json, sys
r = json.loads(sys.argv[1])
assert r["mode"] == "packets", r["mode"]
d = [f["directions"][0] for f in r["flows"]]
assert [(x["deliveredPackets"], x["expectedPackets"]) for x in d] == [(6, 6), (0, 0)], d
assert all(f["status"] == "ok" for f in r["flows"]), r' "$OUT" || fail "--json report: $OUT"

# Abuse 1: the capture side expects two routers where there is one: every packet differs at byte 8.
one_way "$LAB_REPO/captures/ping-any.pcap" initiator lanhost eth0 wan pts-acme --hops 2
assert_eq 1 "$RC" "exit status with the wrong hop count"
assert_contains "$OUT" "first difference at byte 8" "the TTL's offset named"
# Abuse 1b: the capture side expects the clamp of a 1300-byte MTU: the SYN's MSS (1360) differs at
# its option's value, byte 42 (IPv4 20 + TCP 20 + kind and length).
one_way "$LAB_REPO/captures/tcp-refused.pcap" initiator lanhost eth0 wan pts-acme --mtu 1300
assert_eq 1 "$RC" "exit status with another MTU's clamp"
assert_contains "$OUT" "first difference at byte 42" "the MSS option's offset named"
# Abuse 2: the same packets injected twice: the second copies were not planned and are counted.
INJECT_TWICE=1 one_way "$LAB_REPO/captures/ping-any.pcap" initiator lanhost eth0 wan pts-acme
assert_eq 1 "$RC" "exit status with packets nobody planned"
assert_contains "$OUT" "3 packets arrived that were not sent" "unplanned packets counted"
# Abuse 3: no CAP_NET_RAW: a clear error, exit 2, nothing sent.
rc=0
out=$(lab exec wan capsh --drop=cap_net_raw -- -c "exec $POSTERN_BIN replay $LAB_REPO/captures/ping-any.pcap --packets initiator --inject --inject-on pts-acme --rewrite $REWRITE" 2>&1) || rc=$?
assert_eq 2 "$rc" "exit status of an injector without CAP_NET_RAW"
assert_contains "$out" "needs CAP_NET_RAW" "the missing right named"
# Abuse 4: a capture cut in the middle of a packet record: refused, naming the file and the packet.
head -c 700 "$LAB_REPO/captures/frag-ping-udp.pcap" >"$TEST_TMP/cut.pcap"
rc=0
out=$("$POSTERN_BIN" replay "$TEST_TMP/cut.pcap" --packets initiator --inject --rewrite "$REWRITE" 2>&1) || rc=$?
assert_eq 2 "$rc" "exit status for a truncated capture"
assert_contains "$out" "$TEST_TMP/cut.pcap: packet " "the file and packet named"
# Abuse 5: mixed families, a missing or a doubled rewrite address are refused before anything is read or sent.
for bad in INITIATOR=fd00::1,RESPONDER=192.168.77.10 INITIATOR=192.168.77.50 INITIATOR=1.2.3.4,RESPONDER=1.2.3.4; do
    rc=0
    out=$("$POSTERN_BIN" replay "$LAB_REPO/captures/ping-any.pcap" --packets initiator --inject --rewrite "$bad" 2>&1) || rc=$?
    assert_eq 64 "$rc" "exit status for --rewrite $bad"
    assert_contains "$out" "--rewrite" "--rewrite $bad named"
done
echo "abuse: wrong hops, unplanned packets, no CAP_NET_RAW, truncated capture, bad --rewrite: all refused in words"

lab exec lanhost nft delete table inet replay_quiet
lab exec wan nft delete table inet replay_quiet
# Clean up: both stop; no tun device is left on either side.
kill -TERM -- "-$mediator_pid"
wait "$mediator_pid" 2>/dev/null || true
kill -TERM -- "-$server_pid"
wait "$server_pid" 2>/dev/null || true
lab exec wan ip link show pts-acme >/dev/null 2>&1 && fail "pts-acme left in wan"
lab exec lan ip link show ptm-acme >/dev/null 2>&1 && fail "ptm-acme left in lan"
echo "ok: $TEST_NAME"
