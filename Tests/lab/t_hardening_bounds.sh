#!/usr/bin/env bash
# Issue 8, items 7 and 8: a hostile peer (Tests/lab/hostile_peer.py, speaking the wire format over
# plain TCP) floods what used to queue without bound; each real process ends the port or the
# session with a logged reason and stays under 64 MiB RSS. Then a flood of new connections
# (idle, garbage, slow TLS ClientHellos) from 32 addresses does not keep a restarted mediator out.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
postern_setup
PEER="$LAB_REPO/Tests/lab/hostile_peer.py"
SECRET=$(head -1 "$TEST_TMP/secret")
LIMIT_KIB=$((64 * 1024))

# The postern process running in namespace $1.
postern_pid() {
    local p
    for p in $(ip netns pids "${POSTERN_LAB_PREFIX}$1"); do
        [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == postern ]] && { echo "$p"; return; }
    done
    fail "no postern process in $1"
}

# rss_guard NS LOG SECONDS: samples the peak RSS of postern in NS into LOG.
rss_guard() {
    local pid
    pid=$(postern_pid "$1")
    python3 "$PEER" rss "$pid" "$3" >"$TEST_TMP/$2.log" 2>&1 &
    RSS_PID=$!
}

# rss_check LOG WHAT: the peak stayed under 64 MiB.
rss_check() {
    wait "$RSS_PID" || true
    local peak
    peak=$(awk '/^max_rss_kib/ {p = $2} END {print p}' "$TEST_TMP/$1.log")
    [[ -n "$peak" ]] || fail "$2: no RSS sample"
    ((peak < LIMIT_KIB)) || fail "$2: peak RSS $peak KiB, not under $LIMIT_KIB KiB"
    echo "$2: peak RSS $((peak / 1024)) MiB"
}

# Item 10: a group-writable secret file is refused like a world-writable one, on both ends.
write_secret "$TEST_TMP/group-secret" "a-long-enough-lab-secret"
chmod 620 "$TEST_TMP/group-secret"
expect_exit "secret file mode 620" 2 s620 'secret file .* is writable by its group' \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" server --listen 0.0.0.0:7003 --admin off --secret-file "$TEST_TMP/group-secret"
expect_exit "mediator: secret file mode 620" 2 m620 'secret file .* is writable by its group' \
    "$LAB_TOOL" exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7003 --name acme --secret-file "$TEST_TMP/group-secret"

# --- The server against a hostile mediator ---------------------------------------------------
bg wan target python3 -m http.server 9000 --bind 203.0.113.10 --directory "$TEST_TMP"
wait_listen wan 9000
start_server server --insecure \
    --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 --forward tcp:acme/0.0.0.0:5000=203.0.113.10:9000
server_group=$(last_bg_pid)

# 1. PINGs without reading the PONGs: the server ends the session, saying why.
bg wan fake-pings python3 "$PEER" mediator 127.0.0.1 7000 acme "$SECRET" pings 20
wait_log "$TEST_TMP/fake-pings.log" '^established' 10
rss_guard wan rss-pings 20
wait_log "$TEST_TMP/server.log" 'the peer does not read' 30
rss_check rss-pings "server, PING flood"
wait_log "$TEST_TMP/fake-pings.log" '^pings: sent' 25
echo "server: $(grep -o 'the peer does not read[^;]*' "$TEST_TMP/server.log" | head -1)"

# 2. Empty DATA on a port whose user does not read: nothing is queued for them.
bg wan fake-empty python3 "$PEER" mediator 127.0.0.1 7000 acme "$SECRET" empty-data 4
wait_log "$TEST_TMP/fake-empty.log" '^established' 10
wait_mediator acme 5
bg user idle-user python3 -c '
import socket, time
s = socket.create_connection(("203.0.113.10", 8080))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
print("connected", flush=True)
time.sleep(25)'
wait_log "$TEST_TMP/fake-empty.log" '^connected port 7' 15
rss_guard wan rss-empty 20
wait_log "$TEST_TMP/fake-empty.log" '^empty-data: sent' 20
# The server works through what is still in its socket buffer (a debug build takes a while).
wait_log "$TEST_TMP/server.log" "disconnected: connection reset" 30
kill "$RSS_PID" 2>/dev/null || true
rss_check rss-empty "server, empty DATA flood"
sent=$(awk '/^empty-data: sent/ {print $3}' "$TEST_TMP/fake-empty.log")
((sent > 50000)) || fail "the fake mediator sent only $sent empty DATA"
echo "server: $sent empty DATA frames, none queued"

# 3. Frames before a reverse relay's own connect finishes: bounded in number, the port is reset.
wait_log "$TEST_TMP/fake-empty.log" 'empty-data: sent' 1
bg wan fake-early python3 "$PEER" mediator 127.0.0.1 7000 acme "$SECRET" early-frames 10
wait_log "$TEST_TMP/fake-early.log" '^early-frames: RESET port 2 code 13' 15
grep -q 'port 2: more than 64 frames before the connection was ready' "$TEST_TMP/server.log" \
    || fail "the server did not log why it reset port 2"
echo "server: early frames past 64 reset the port (protocolError), logged"

# 4. ACCEPTED for a port that is not listening: reset, and nothing is kept.
bg wan fake-accepted python3 "$PEER" mediator 127.0.0.1 7000 acme "$SECRET" bogus-accepted 8
wait_log "$TEST_TMP/fake-accepted.log" '^established' 10
rss_guard wan rss-accepted 8
wait_log "$TEST_TMP/fake-accepted.log" '^bogus-accepted: sent' 20
rss_check rss-accepted "server, bogus ACCEPTED flood"
grep -q "which is not listening here; resetting it" "$TEST_TMP/server.log" || fail "the stray ACCEPTED were not logged"
lines=$(grep -c "which is not listening here" "$TEST_TMP/server.log")
((lines <= 8)) || fail "a stray ACCEPTED flood wrote $lines log lines"
echo "server: $(awk '/^bogus-accepted: sent/ {print $3}' "$TEST_TMP/fake-accepted.log") stray ACCEPTED, $lines log lines"
# The fake stays connected a few seconds: the server must hold no record of those ports.
held=$(ctl ports acme --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') \
    || fail "ctl ports acme failed: the stray ACCEPTED cost the fake mediator its session ($(tail -3 "$TEST_TMP/server.log"))"
((held <= 2)) || fail "the server kept $held port records after stray ACCEPTED"
echo "server: $held port records after the stray ACCEPTED"
kill -TERM -- "-$(last_bg_pid)" 2>/dev/null || true

# --- The mediator against a hostile server ---------------------------------------------------
bg lanhost http python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP"
wait_listen lanhost 80
bg wan fake-server python3 "$PEER" server 7001 "$SECRET" pings 20
wait_log "$TEST_TMP/fake-server.log" '^listening' 10
bg lan mediator "$POSTERN_BIN" mediator --server 203.0.113.10:7001 --name acme --secret-file "$TEST_TMP/secret" --insecure
wait_log "$TEST_TMP/fake-server.log" '^established' 10
rss_guard lan rss-mediator 20
wait_log "$TEST_TMP/mediator.log" 'the peer does not read' 30
rss_check rss-mediator "mediator, PING flood"
echo "mediator: $(grep -o 'the peer does not read[^;]*' "$TEST_TMP/mediator.log" | head -1)"
kill -TERM -- "-$(last_bg_pid)" 2>/dev/null || true

# --- Item 8: a connection flood does not keep a restarting mediator out ------------------------
# A TLS server this time (slow ClientHellos cost it the most), and 32 flooding addresses, so the
# flood passes both the per-address cap (16) and the table's (256).
kill -TERM -- "-$server_group"
while lab exec wan ss -Htln 'sport = :7000' | grep -q .; do sleep 0.1; done
start_server server-tls
sources=()
for i in $(seq 100 131); do
    lab exec user ip addr add "203.0.113.$i/24" dev eth0
    sources+=("203.0.113.$i")
done
start_mediator mediator-tls
mediator_group=$(last_bg_pid)
wait_mediator acme 10
bg user flood python3 "$PEER" flood 203.0.113.10 7000 30 "${sources[@]}"
bg user flood-one python3 "$PEER" flood 203.0.113.10 7000 30 203.0.113.20
sleep 4
wait_log "$TEST_TMP/server-tls.log" 'unauthenticated connections' 5
for round in 1 2 3; do
    kill -TERM -- "-$mediator_group" 2>/dev/null || true
    until ! ctl mediators --json 2>/dev/null | grep -q '"name" : "acme"'; do sleep 0.1; done
    started=$SECONDS
    start_mediator "mediator-tls-$round"
    mediator_group=$(last_bg_pid)
    wait_mediator acme 10
    echo "round $round: the restarted mediator got in after $((SECONDS - started)) s during the flood"
done
wait_log "$TEST_TMP/flood.log" '^flood:' 40
wait_log "$TEST_TMP/flood-one.log" '^flood:' 10
cat "$TEST_TMP/flood.log" "$TEST_TMP/flood-one.log"
grep -E 'unauthenticated connections' "$TEST_TMP/server-tls.log" | tail -2
