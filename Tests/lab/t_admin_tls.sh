#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The admin API over HTTPS (issue 14): server --admin-tls on 203.0.113.10:7443 (a non-loopback
# address, which needs a configured token and is accepted without --admin-insecure-plain), and
# postern ctl from the user host:
#  - ctl status and ctl mediators over https:// with --admin-pin (the key `postern fingerprint`
#    prints) list acme; the default pin (the key of STATE_DIR/server.crt) works the same;
#  - the event stream (ctl events --history) runs over TLS: history, then a live event;
#  - a wrong --admin-pin is refused with the REFUSING sentence (the handshake fails before the
#    request, token included, is written), exit 1;
#  - http:// against the TLS port fails with an error within --admin-timeout instead of hanging, and
#    https:// without a way to verify the server is refused before connecting;
#  - the dashboard page is served over the same HTTPS with its Content-Security-Policy (curl pinned).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

write_secret "$TEST_TMP/token" "admin-token-$RANDOM-$RANDOM-$RANDOM-$RANDOM"
bg wan server "$POSTERN_BIN" server --listen 0.0.0.0:7000 --secret-file "$TEST_TMP/secret" \
    --admin 203.0.113.10:7443 --admin-tls --admin-token-file "$TEST_TMP/token"
wait_listen wan 7000 tcp
wait_listen wan 7443 tcp
wait_log "$TEST_TMP/server.log" "admin API on https://203.0.113.10:7443"
start_mediator mediator
pin=$("$POSTERN_BIN" fingerprint --state-dir "$POSTERN_STATE_DIR")
echo "server key: $pin"
grep -qF "$pin" "$TEST_TMP/server.log" || fail "the server does not log the key ctl pins"

admin=https://203.0.113.10:7443
uctl() { lab exec user "$POSTERN_BIN" ctl --admin "$admin" --token-file "$TEST_TMP/token" "$@"; }
end=$((SECONDS + 20))
until uctl --admin-pin "$pin" mediators --json 2>/dev/null | grep -q '"name" : "acme"'; do
    ((SECONDS < end)) || fail "acme not listed over https within 20 s: $(uctl --admin-pin "$pin" mediators 2>&1)"
    sleep 0.2
done
status=$(uctl --admin-pin "$pin" status)
echo "$status"
echo "$status" | grep -Eq '^acme +connected' || fail "ctl status over https does not list acme as connected"
# No pin given: the key of the server's certificate in the state directory ($POSTERN_STATE_DIR).
uctl mediators | grep -q '^acme ' || fail "ctl over https with the default pin (STATE_DIR/server.crt) failed"
echo "ctl status and mediators over https: acme connected (pinned, and by the default pin)"

# The event stream over TLS: the history (acme's "connected"), then a live event (a forward added).
setsid "$LAB_TOOL" exec user "$POSTERN_BIN" ctl --admin "$admin" --token-file "$TEST_TMP/token" --admin-pin "$pin" events --history \
    >"$TEST_TMP/events.log" 2>&1 </dev/null &
events=$!
_LAB_PIDS+=("$events")
wait_log "$TEST_TMP/events.log" '"kind":"connected"' 15
uctl --admin-pin "$pin" forwards add tcp:0.0.0.0:18080=acme/192.168.77.10:80 >/dev/null
wait_log "$TEST_TMP/events.log" '"kind":"forward-added"' 15
kill -0 "$events" || fail "ctl events exited: $(cat "$TEST_TMP/events.log")"
echo "ctl events over https: $(grep -c . "$TEST_TMP/events.log") lines, the last: $(tail -1 "$TEST_TMP/events.log")"

# A wrong pin: refused before the token leaves, exit 1.
wrong="sha256:$(printf 'ab%.0s' {1..32})"
rc=0
out=$(uctl --admin-pin "$wrong" status 2>&1) || rc=$?
assert_eq 1 "$rc" "ctl with a wrong pin: exit status"
assert_contains "$out" "REFUSING the admin API at 203.0.113.10:7443: it presented TLS key $pin, but $wrong is pinned (--admin-pin)" \
    "ctl with a wrong pin"
echo "wrong pin: $out"

# Plain HTTP to the TLS port: an error, in time.
rc=0
start=$SECONDS
out=$(lab exec user "$POSTERN_BIN" ctl --admin http://203.0.113.10:7443 --token-file "$TEST_TMP/token" --admin-timeout 5 status 2>&1) || rc=$?
((rc != 0)) || fail "plain http:// to the TLS admin port succeeded: $out"
assert_contains "$out" "use https://" "http:// to the TLS admin port"
((SECONDS - start <= 10)) || fail "plain http:// to the TLS admin port took $((SECONDS - start)) s (--admin-timeout 5)"
echo "http:// to the TLS port: exit $rc: $out"
# https:// with no pin, no CA and no certificate in the state directory: refused, nothing dialled.
rc=0
out=$(lab exec user env POSTERN_STATE_DIR="$TEST_TMP/empty" "$POSTERN_BIN" ctl --admin "$admin" --token-file "$TEST_TMP/token" status 2>&1) \
    || rc=$?
assert_eq 64 "$rc" "https:// without a way to verify: exit status (a usage error)"
assert_contains "$out" "needs a way to verify the server" "https:// without a way to verify"

# The dashboard over the same HTTPS, checked by curl against the pinned key.
spki=$(openssl x509 -in "$POSTERN_STATE_DIR/server.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
headers=$(lab exec user curl -sS -k --pinnedpubkey "sha256//$spki" -D - -o /dev/null --max-time 10 \
    -H "Host: 203.0.113.10:7443" "$admin/dashboard")
echo "$headers" | grep -q "^HTTP/1.1 200" || fail "the dashboard over https: $headers"
echo "$headers" | grep -qi "^content-security-policy: default-src 'none'" || fail "no CSP on the dashboard over https: $headers"
code=$(lab exec user curl -sS -k --pinnedpubkey "sha256//$spki" -o /dev/null -w '%{http_code}' --max-time 10 "$admin/v1/status")
assert_eq 401 "$code" "/v1/status over https without the token"
echo "dashboard over https: 200 with its CSP; /v1/status without the token: 401"
echo "ok: $TEST_NAME"
