#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A tcp: forward on the server carries HTTP: curl in user fetches a 20 MB
# random file from python's http.server in lanhost, through the mediator, twice,
# and both copies are byte-exact (SHA-256).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mkdir -p "$TEST_TMP/www"
head -c $((20 << 20)) /dev/urandom >"$TEST_TMP/www/big.bin"
want=$(sha256sum <"$TEST_TMP/www/big.bin" | cut -d' ' -f1)

bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_listen lanhost 80
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80
start_mediator mediator
wait_mediator acme

for i in 1 2; do
    start=$(date +%s.%N)
    lab exec user curl -sS --fail --max-time 30 -o "$TEST_TMP/got$i" http://203.0.113.10:8080/big.bin \
        || fail "fetch $i through the forward failed"
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    got=$(sha256sum <"$TEST_TMP/got$i" | cut -d' ' -f1)
    assert_eq "$want" "$got" "SHA-256 of fetch $i"
    printf 'fetch %d: 20 MiB in %.2fs\n' "$i" "$secs"
done
# Both requests really went through the LAN server (and nothing else did).
assert_eq 2 "$(grep -c '"GET /big.bin HTTP/1.1" 200' "$TEST_TMP/web.log")" "requests seen by lanhost"
grep -q "192.168.77.2 - -" "$TEST_TMP/web.log" || fail "lanhost did not see the mediator's address as the client"
echo "ok: $TEST_NAME"
