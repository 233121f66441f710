#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# dig from `user` to a DNS server in the LAN (dnsmasq in lanhost, started here with no configuration
# of its own) through udp:0.0.0.0:53=acme/192.168.77.10:53:
#  - the answers come over the session's UDP channel (its counters move, nothing on TCP while up);
#  - with the gateway dropping every UDP datagram the LAN sends out, dig still gets its answers, over
#    the TCP channel, and `ctl mediators` says tcp; with the rule removed it says udp again and the
#    channel carries the answers.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# dig_ten: ten queries from user, each must be answered with the address dnsmasq was told.
dig_ten() {
    local i out
    for i in $(seq 10); do
        out=$(lab exec user dig @203.0.113.10 -p 53 "host$i.lab.test" A +short +tries=3 +time=1) || fail "dig $i: $out"
        assert_eq 192.0.2.53 "$out" "dig host$i.lab.test ($1)"
    done
}

# The DNS server: only what the command line says, its pid file here, killed with the test.
bg lanhost dnsmasq dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --keep-in-foreground --bind-interfaces \
    --listen-address=192.168.77.10 --port=53 --address=/lab.test/192.0.2.53 --log-queries --log-facility=- \
    --pid-file="$TEST_TMP/dnsmasq.pid"
wait_log "$TEST_TMP/dnsmasq.pid" '^[0-9]+$'
start_server server --keepalive 1 --dead-timeout 3 --udp-keepalive 0.5 \
    --forward udp:0.0.0.0:53=acme/192.168.77.10:53
wait_listen wan 53 udp
start_mediator mediator --allow 192.168.77.10:53 --udp-keepalive 0.5
wait_mediator acme
wait_path udp 10

# 1. Over the UDP channel.
before=$(field delivered)
dig_ten udp
after=$(field delivered)
((after - before >= 10)) || fail "the UDP channel delivered $((after - before)) datagrams, not the 10 answers"
assert_eq 0 "$(field tcpWhileUp)" "datagrams sent on the TCP channel while the UDP channel was up"
n=$(grep -c 'query\[A\] host[0-9]*.lab.test from 192.168.77.2' "$TEST_TMP/dnsmasq.log" || true)
((n >= 10)) || fail "dnsmasq logged $n queries from the mediator's host"
echo "udp: 10 answers, the UDP channel delivered $((after - before)), TCP while up: 0"

# 2. The gateway drops all outbound UDP of the LAN: the TCP channel carries them.
lab exec gw nft add rule inet postern_lab block ip saddr 192.168.77.0/24 meta l4proto udp drop comment '"udp-dns-test"'
wait_path tcp 10
wait_mediator_off_udp
before=$(field delivered)
dig_ten tcp
assert_eq "$before" "$(field delivered)" "datagrams the UDP channel delivered while UDP was dropped"
echo "blocked: ctl says $(field path); 10 answers over the TCP channel"

# 3. The rule removed: back to UDP.
for h in $(lab exec gw nft -a list chain inet postern_lab block | sed -n 's/.*"udp-dns-test".*# handle \([0-9]*\)/\1/p'); do
    lab exec gw nft delete rule inet postern_lab block handle "$h"
done
t0=$SECONDS
wait_path udp 15
before=$(field delivered)
dig_ten "udp again"
((($(field delivered) - before) >= 10)) || fail "the UDP channel did not carry the answers after coming back"
echo "unblocked: udp again after about $((SECONDS - t0)) s; 10 answers over the UDP channel"
ctl mediators | grep 'datagrams via'
echo "ok: $TEST_NAME"
