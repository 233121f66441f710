#!/usr/bin/env bash
# Issue 8, item 10 (hygiene), through the real NAT:
#  a) text a peer chose reaches the log sanitised: a fake mediator's GOAWAY whose message clears the
#     screen and forges a log line, and an ENVIRONMENT hostname that does the same, arrive escaped,
#     on one line, bounded in length;
#  b) failed proofs are throttled per source address: a mediator with a wrong secret (through the
#     NAT) keeps retrying; after 5 failures its address is closed at accept, logged once per burst,
#     and it never gets in; a mediator with the right secret from another address (user) still does.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup
PEER="$LAB_REPO/Tests/lab/hostile_peer.py"
SECRET=$(head -1 "$TEST_TMP/secret")

# --- a) peer text in the log -----------------------------------------------------------------
start_server server --insecure
server_group=$(last_bg_pid)
wait_listen wan 7000
bg wan fake-goaway python3 "$PEER" mediator 127.0.0.1 7000 acme "$SECRET" goaway 5
wait_log "$TEST_TMP/fake-goaway.log" '^goaway sent' 10
wait_log "$TEST_TMP/server.log" "mediator 'acme' disconnected" 10
line=$(grep "mediator 'acme' disconnected" "$TEST_TMP/server.log")
echo "server: ${line:0:160}…"
if grep -q $'\e' "$TEST_TMP/server.log"; then fail "an escape character reached the server's log"; fi
if grep -q '^FORGED' "$TEST_TMP/server.log"; then fail "the peer forged a log line"; fi
grep -qF 'bye\u{1b}[2J\u{a}FORGED: mediator' <<<"$line" || fail "the GOAWAY message is not shown escaped: $line"
grep -qF '\u{202e}' <<<"$line" || fail "the bidi override is not shown escaped: $line"
((${#line} < 600)) || fail "the 5000-character GOAWAY message was not cut: ${#line} characters"
# The stream never ends by itself: read it for 3 s at a time, so a slow start is read again.
end=$((SECONDS + 15))
until events=$(timeout 3 "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl events --history 2>/dev/null || true) \
    && grep -q 'FORGED-HOST' <<<"$events"; do
    ((SECONDS < end)) || fail "the ENVIRONMENT hostname is not in the events: $events"
done
grep -qF 'hostile\\u{1b}[2J\\u{a}FORGED-HOST' <<<"$events" \
    || fail "the ENVIRONMENT hostname is not shown escaped in the events: $events"
echo "events: $(grep -o '"detail"[^,]*FORGED-HOST[^,]*' <<<"$events" | head -1)"

# --- b) failed proofs throttled per address --------------------------------------------------
t0=$EPOCHREALTIME
kill -TERM -- "-$server_group"
# Gone before the next server binds 7000 (a fixed 0.5 s assumed a debug server exits that fast).
end=$((SECONDS + 10))
while kill -0 -- "-$server_group" 2>/dev/null; do
    ((SECONDS < end)) || fail "the first server still runs 10 s after SIGTERM"
    sleep 0.05
done
echo "the first server exited $(bc <<<"$EPOCHREALTIME - $t0") s after SIGTERM"
start_server server-tls
wait_listen wan 7000
write_secret "$TEST_TMP/wrong" "not-the-secret-at-all"
expect_retrying "a mediator with a wrong secret" wrong 'refused|closed|reset|cannot' \
    "$LAB_TOOL" exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/wrong"
wrong_pid=$(last_bg_pid)
wait_log "$TEST_TMP/server-tls.log" 'too many failed proofs: 5 from [0-9.]+' 15
throttle=$(grep 'too many failed proofs' "$TEST_TMP/server-tls.log" | head -1)
echo "server: ${throttle#*postern.server: }"
nat=$(grep -oE 'too many failed proofs: 5 from [0-9.]+' <<<"$throttle" | awk '{print $NF}')
# Closed at accept: within the 10 s burst the server sees at most a handful more proofs from it.
sleep 6
proofs=$(grep -c "wrong proof from mediator 'acme'" "$TEST_TMP/server-tls.log" || true)
bursts=$(grep -c "too many failed proofs: 5 from $nat" "$TEST_TMP/server-tls.log" || true)
echo "server: $proofs wrong proofs checked, $bursts burst(s) logged for $nat in ~8 s of retrying"
((proofs <= 7)) || fail "the throttled address still had $proofs proofs checked"
((bursts == 1)) || fail "the throttle was logged $bursts times in one burst"
kill -0 "$wrong_pid" 2>/dev/null || fail "the mediator with the wrong secret stopped retrying"
# The right secret from another address gets in while the NAT's address is closed.
bg user good "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name beta --secret-file "$TEST_TMP/secret"
wait_mediator beta 10
echo "server: beta from 203.0.113.20 connected while $nat was closed"
echo "the wrong mediator, closed at accept: $(tail -1 "$TEST_TMP/wrong.log" | sed 's/^.*postern.mediator: //')"
if grep -q 'not-the-secret' "$TEST_TMP"/*.log; then fail "a secret was logged"; fi
kill -TERM -- "-$wrong_pid" 2>/dev/null || true
