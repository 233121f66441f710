#!/usr/bin/env bash
# Issue 8, item 10 (hygiene), through the real NAT:
#  a) text a peer chose reaches the log sanitised: a fake mediator's GOAWAY whose message clears the
#     screen and forges a log line, and an ENVIRONMENT hostname that does the same, arrive escaped,
#     on one line, bounded in length;
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
events=$(timeout 3 "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl events --history 2>/dev/null || true)
grep -qF 'hostile\\u{1b}[2J\\u{a}FORGED-HOST' <<<"$events" \
    || fail "the ENVIRONMENT hostname is not shown escaped in the events: $events"
echo "events: $(grep -o '"detail"[^,]*FORGED-HOST[^,]*' <<<"$events" | head -1)"
