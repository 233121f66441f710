#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A second server started by mistake on the ports of a running one (same user, same host) fails with
# "address in use", naming the port, and takes nothing from the first: its sockets set SO_REUSEPORT
# (one per event loop), which the kernel would otherwise let it share with the first server's.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

bg lanhost web python3 -m http.server 80 --bind 192.168.77.10
start_server server --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 --forward udp:0.0.0.0:5353=acme/192.168.77.10:53 \
    --threads 2
start_mediator mediator --allow 192.168.77.0/24
wait_mediator acme 20
wait_listen wan 8080
wait_listen lanhost 80

srv=("$LAB_TOOL" exec wan "$POSTERN_BIN" server --threads 2 --admin off --secret-file "$TEST_TMP/secret")
expect_exit "second server on the service port" 1 second-service 'cannot listen on 0\.0\.0\.0:7000: Address already in use' \
    "${srv[@]}" --listen 0.0.0.0:7000
expect_exit "second server on a tcp: forward's port" 1 second-tcp 'forward tcp:0\.0\.0\.0:8080=.*cannot listen on 0\.0\.0\.0:8080: Address already in use' \
    "${srv[@]}" --listen 0.0.0.0:7001 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80
expect_exit "second server on a udp: forward's port" 1 second-udp 'forward udp:0\.0\.0\.0:5353=.*Address already in use' \
    "${srv[@]}" --listen 0.0.0.0:7001 --forward udp:0.0.0.0:5353=acme/192.168.77.10:53
# Nothing of the failed servers stayed behind, and the first one serves every connection as before.
for port in 7001; do
    if lab exec wan ss -Htuln "sport = :$port" | grep -q .; then fail "a failed server left port $port bound"; fi
done
for i in 1 2 3 4 5 6; do
    out=$(lab exec user curl -sS --max-time 5 -o /dev/null -w '%{http_code}' http://203.0.113.10:8080/)
    assert_eq 200 "$out" "request $i through the first server's forward"
done
# (Also here, with a server and mediator at hand: a refused `ctl ping` prints its PING line before the
# error, also through a pipe, as ping(8) does.)
rc=0
out=$(ctl ping acme 10.9.9.9 --count 1 2>&1) || rc=$?
assert_eq 2 "$rc" "exit status of a ping the policy denies"
assert_eq "PING 10.9.9.9 from mediator acme: 56 data bytes" "$(head -1 <<<"$out")" "first line of a denied ping"
assert_contains "$(sed -n 2p <<<"$out")" "error: denied by policy" "second line of a denied ping"
echo "ok: a second server on any of the first one's ports fails with 'address in use'"
