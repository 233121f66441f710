#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# More bounds (DESIGN.md, "Security stance"); each failing request or port gets a
# clear error and everything else keeps going:
#   - request rate: a mediator with --max-request-rate 5 refuses a burst of opens
#     past it with "limit exceeded ... requests a second", and serves again later;
#   - buffered bytes per session: with --max-session-buffer 1 (MiB), a connection
#     whose LAN receiver stops reading is reset once the mediator holds 1 MiB for it,
#     and a second connection of the same session keeps working;
#   - sessions: a server with --max-mediators 1 turns a second mediator away with
#     "server full", keeps the first, and the second stays out (and retries);
#   - the admin API: bound beyond loopback, the server will not start without a
#     token; with one, a request without it or with a wrong one gets 401.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# shellcheck disable=SC2016
bg lanhost web socat TCP-LISTEN:80,bind=192.168.77.10,reuseaddr,fork SYSTEM:'echo lan web'
# A receiver that never reads: socat stops once sleep's stdin pipe is full.
bg lanhost sink socat TCP-LISTEN:9100,bind=192.168.77.10,reuseaddr,fork,rcvbuf=4096 SYSTEM:'sleep 60'
wait_listen lanhost 80
wait_listen lanhost 9100

start_server server --keepalive 1 --dead-timeout 3 --max-mediators 1 \
    --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 --forward tcp:0.0.0.0:8100=acme/192.168.77.10:9100
start_mediator mediator --max-request-rate 5 --max-session-buffer 1
wait_mediator acme

# --- request rate
# The 15 opens go at once: one after the other, each ctl process's start-up on a loaded machine can
# take longer than the bucket needs to refill a token, and then nothing is ever refused.
ok=0 limited=0 openers=()
for i in $(seq 1 15); do
    (
        rc=0
        ctl open acme tcp "0.0.0.0:$((21000 + i))" >"$TEST_TMP/open-$i.out" 2>&1 || rc=$?
        echo "$rc" >"$TEST_TMP/open-$i.rc"
    ) &
    openers+=("$!")
done
wait "${openers[@]}" # only these: the server, mediator and listeners are children of this shell too
for i in $(seq 1 15); do
    if [[ $(cat "$TEST_TMP/open-$i.rc") == 0 ]]; then
        ok=$((ok + 1))
    else
        assert_contains "$(cat "$TEST_TMP/open-$i.out")" "requests a second" "error of open #$i"
        limited=$((limited + 1))
    fi
done
echo "request rate 5/s: $ok opens served, $limited refused"
((limited > 0)) || fail "no open was refused by --max-request-rate 5"
((ok >= 5)) || fail "only $ok opens served; the burst of 5 should pass"
grep -q "request rate over 5/s" "$TEST_TMP/mediator.log" || fail "the mediator did not log the rate limit"
sleep 1.2
ctl open acme tcp 0.0.0.0:21100 >/dev/null || fail "an open after the rate recovered was refused"
for id in $(ctl ports acme --json | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'); do
    ctl close acme "$id" >/dev/null
done

# --- buffered bytes per session
# 32 MiB towards the receiver that does not read; socat -T: give up if it stalls.
bg user flood sh -c 'head -c 33554432 /dev/zero | socat -T 15 - TCP:203.0.113.10:8100; echo "flood exit $?"'
wait_log "$TEST_TMP/mediator.log" 'session already holds 1 MiB' 15
wait_log "$TEST_TMP/flood.log" 'flood exit' 15
grep -Eq 'Connection reset|flood exit [^0]' "$TEST_TMP/flood.log" || fail "the flooding user was not reset: $(cat "$TEST_TMP/flood.log")"
assert_eq "lan web" "$(lab exec user socat -T3 - TCP:203.0.113.10:8080 </dev/null)" "another port of the same session"
echo "session buffer: the stalled port was reset at 1 MiB; the session serves other ports"

# --- sessions
start_mediator beta --name beta
wait_log "$TEST_TMP/server.log" "mediator 'beta' from .* turned away: 1 mediators connected" 10
wait_log "$TEST_TMP/beta.log" 'server full' 10
ctl mediators | grep -q '^acme ' || fail "acme lost its place"
if ctl mediators | grep -q '^beta '; then fail "beta got in past --max-mediators 1"; fi
assert_eq "lan web" "$(lab exec user socat -T3 - TCP:203.0.113.10:8080 </dev/null)" "acme's forward with beta turned away"
echo "sessions: a second mediator was turned away with 'server full'"

# --- the admin API beyond loopback
expect_exit "admin API beyond loopback without a token" 2 notoken "would be reachable from the network" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" server --listen 0.0.0.0:7003 --secret-file "$TEST_TMP/secret" --admin 203.0.113.10:7073
write_secret "$TEST_TMP/token" "admin-token-$RANDOM-$RANDOM-$RANDOM"
expect_exit "plain admin API beyond loopback without saying so" 2 plainadmin "would be plain HTTP on the network" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" server --listen 0.0.0.0:7003 --secret-file "$TEST_TMP/secret" \
    --admin 203.0.113.10:7073 --admin-token-file "$TEST_TMP/token"
bg wan server_token "$POSTERN_BIN" server --listen 0.0.0.0:7003 --secret-file "$TEST_TMP/secret" \
    --admin 203.0.113.10:7073 --admin-token-file "$TEST_TMP/token" --admin-insecure-plain
wait_listen wan 7073
code() { lab exec user curl -s -o /dev/null -w '%{http_code}' "$@" http://203.0.113.10:7073/v1/mediators; }
assert_eq 401 "$(code)" "admin request without a token"
assert_eq 401 "$(code -H 'Authorization: Bearer wrong')" "admin request with a wrong token"
assert_eq 200 "$(code -H "Authorization: Bearer $(cat "$TEST_TMP/token")")" "admin request with the token"
echo "admin API beyond loopback: refused to start without a token or without --admin-insecure-plain; 401 without it, 200 with it"
echo "ok: $TEST_NAME"
