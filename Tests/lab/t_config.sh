#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Server and mediator started from nothing but a TOML --config file (one file,
# a [server] and a [mediator] table) work end to end: a tcp: forward to the
# LAN, a tcp:acme/ forward from the LAN, a udp: forward, the timing settings,
# and the mediator's allow list (a connect outside it is denied).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

cat >"$TEST_TMP/postern.toml" <<EOF2
# Postern lab configuration
[server]
listen = "0.0.0.0:7000"
secret-file = "$TEST_TMP/secret"
admin = "127.0.0.1:7070"
keepalive = 1
dead-timeout = 3
udp-max-flows = 64
forwards = [
    "tcp:0.0.0.0:8080=acme/192.168.77.10:80",
    "tcp:acme/0.0.0.0:9000=203.0.113.10:2222",
    "udp:0.0.0.0:5353=acme/192.168.77.10:5353",
]

[mediator]
server = "203.0.113.10:7000"
name = "acme"
secret-file = "$TEST_TMP/secret"
allow = ["192.168.77.10/32:80", "192.168.77.10/32:5353"]
allow-listen = true
EOF2

# shellcheck disable=SC2016
bg lanhost web socat TCP-LISTEN:80,bind=192.168.77.10,reuseaddr,fork SYSTEM:'echo lan web'
bg lanhost dns socat UDP4-RECVFROM:5353,bind=192.168.77.10,fork EXEC:cat
bg wan echo socat TCP-LISTEN:2222,bind=203.0.113.10,reuseaddr,fork EXEC:cat
wait_listen lanhost 80
wait_listen lanhost 5353 udp
wait_listen wan 2222

bg wan server "$POSTERN_BIN" server --config "$TEST_TMP/postern.toml"
wait_listen wan 7000
wait_listen wan 7070
wait_listen wan 8080
wait_listen wan 5353 udp
bg lan mediator "$POSTERN_BIN" mediator --config "$TEST_TMP/postern.toml"
wait_mediator acme
wait_listen lan 9000

assert_eq "lan web" "$(lab exec user socat -T3 - TCP:203.0.113.10:8080 </dev/null)" "tcp: forward from the config"
assert_eq "from lanhost" "$(lab exec lanhost socat -T3 - TCP:192.168.77.2:9000 <<<"from lanhost")" "tcp:acme/ forward from the config"
assert_eq "datagram" "$(lab exec user socat -T3 - UDP:203.0.113.10:5353 <<<"datagram")" "udp: forward from the config"

# The allow list from the config is in force: port 22 is not on it.
rc=0
err=$(ctl connect acme 0 192.168.77.10:22 2>&1 >/dev/null) || rc=$?
assert_eq 1 "$rc" "exit status of a connect outside the allow list"
assert_contains "$err" "denied by policy"
# The keepalive from the config (1 s) reaches the mediator in WELCOME: a 4 s
# block is detected as dead (3 s), not ignored as with the 30 s default.
lab block-tunnel 7000
wait_log "$TEST_TMP/mediator.log" 'tunnel lost: keepalive timeout' 6
lab unblock-tunnel 7000
echo "ok: $TEST_NAME"
