#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Memory of the server and the mediator through a load and after it (issue 15), on a tcp: forward
# with TLS: iperf3 with 1 stream, 8 streams and 8 streams -R, then 1,000 idle connections.
#  - during the load each process stays within LOAD_MIB of its RSS at start;
#  - once the load has passed each gives its free heap back (HeapTrimmer trims after the first quiet
#    second): within SETTLED_MIB of its start, polled with a deadline;
#  - 1,000 idle connections cost under PER_CONN_KIB each (RSS holding them minus RSS just before);
#  - abuse: 4 users that stop reading while lanhost keeps sending to them: the server holds about
#    their windows (4 MiB each), not the large tunnel reads their bytes were cut from (StreamRelay
#    copies bytes that must wait out of them): within STALL_MIB of start; and after they close, the
#    memory goes back again.
# The bounds are generous on purpose and documented here: the targets (64 MiB RSS in all, 16 KiB
# per idle connection) are measured by tools/bench on a release build; this test may run a debug
# build on a shared, loaded machine, where RSS moves with the allocator. Measured on the code before
# this test (release build): +78 MiB (server) and +140 MiB (mediator) during 8 streams, and +56/+60
# MiB still held after the load; with it: see the log lines this test prints.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup
LOAD_MIB=48
SETTLED_MIB=24
PER_CONN_KIB=24
STALL_MIB=40
BURST="$LAB_REPO/tools/bench.d/burst.py"

bg lanhost iperf iperf3 -s -B 192.168.77.10 -p 5201
bg lanhost echo python3 "$BURST" serve 192.168.77.10 9100
wait_log "$TEST_TMP/echo.log" '^listening'
# A sender that never stops: writes to every connection until it closes.
bg lanhost blast python3 -c '
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.77.10", 9300)); s.listen(64); print("listening", flush=True)
def blast(c):
    chunk = b"x" * 65536
    try:
        while True: c.sendall(chunk)
    except OSError: pass
while True:
    c, _ = s.accept(); threading.Thread(target=blast, args=(c,), daemon=True).start()
'
wait_log "$TEST_TMP/blast.log" '^listening'
# postern_pid PGID: the postern process of a `bg` group (tools/lab exec execs it once the namespace is entered).
postern_pid() {
    local end=$((SECONDS + 10)) pid
    until pid=$(pgrep -g "$1" -f -- "^$POSTERN_BIN (server|mediator) "); do
        ((SECONDS < end)) || fail "no postern process in group $1"
        sleep 0.1
    done
    echo "$pid"
}
start_server server --forward tcp:0.0.0.0:5201=acme/192.168.77.10:5201 \
    --forward tcp:0.0.0.0:9100=acme/192.168.77.10:9100 --forward tcp:0.0.0.0:9300=acme/192.168.77.10:9300
server_pid=$(postern_pid "$(last_bg_pid)")
start_mediator mediator
mediator_pid=$(postern_pid "$(last_bg_pid)")
wait_mediator acme
wait_listen wan 5201 tcp
wait_tcp user 203.0.113.10 9100

rss() { awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$1/status"; }
start_s=$(rss "$server_pid") start_m=$(rss "$mediator_pid")
echo "RSS at start: server $start_s MiB, mediator $start_m MiB"

# peak_during CMD...: runs CMD while sampling both RSS every 0.2 s; sets peak_s, peak_m (MiB).
peak_during() {
    "$@" >"$TEST_TMP/load.log" 2>&1 &
    local job=$! r
    peak_s=0 peak_m=0
    while kill -0 "$job" 2>/dev/null; do
        r=$(rss "$server_pid"); ((r > peak_s)) && peak_s=$r
        r=$(rss "$mediator_pid"); ((r > peak_m)) && peak_m=$r
        sleep 0.2
    done
    wait "$job" || fail "load failed: $(tail -n 5 "$TEST_TMP/load.log")"
}
for args in "-P 1" "-P 8" "-P 8 -R"; do
    # shellcheck disable=SC2086 # the iperf3 options are words
    peak_during lab exec user iperf3 -c 203.0.113.10 -p 5201 -t 3 $args
    echo "iperf3 $args: $(grep -E 'receiver' "$TEST_TMP/load.log" | tail -n 1 | awk '{print $(NF-2), $(NF-1)}');" \
        "peak RSS server $peak_s MiB (+$((peak_s - start_s))), mediator $peak_m MiB (+$((peak_m - start_m)))"
    ((peak_s - start_s <= LOAD_MIB)) || fail "server RSS grew by $((peak_s - start_s)) MiB during iperf3 $args (bound $LOAD_MIB)"
    ((peak_m - start_m <= LOAD_MIB)) || fail "mediator RSS grew by $((peak_m - start_m)) MiB during iperf3 $args (bound $LOAD_MIB)"
done

# settled WHAT: polls until both are within SETTLED_MIB of their start (the trim follows the load).
settled() {
    local end=$((SECONDS + 20)) s m
    while true; do
        s=$(rss "$server_pid") m=$(rss "$mediator_pid")
        ((s - start_s <= SETTLED_MIB && m - start_m <= SETTLED_MIB)) && break
        ((SECONDS < end)) || fail "$1: RSS server $s MiB (+$((s - start_s))), mediator $m MiB (+$((m - start_m))) after 20 s (bound +$SETTLED_MIB)"
        sleep 0.5
    done
    echo "$1: RSS server $s MiB (+$((s - start_s))), mediator $m MiB (+$((m - start_m)))"
}
settled "after the load"

# 1,000 idle connections, each with one echo done.
pre_s=$(rss "$server_pid") pre_m=$(rss "$mediator_pid")
bg user hold python3 -c '
import socket, sys, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
conns = []
for i in range(1000):
    c = socket.create_connection(("203.0.113.10", 9100), timeout=30); c.sendall(b"x")
    conns.append(c)
for c in conns:
    assert c.recv(1) == b"x"
print("READY", len(conns), flush=True)
time.sleep(120)
'
hold_pgid=$(last_bg_pid)
wait_log "$TEST_TMP/hold.log" '^READY 1000' 90
sleep 2   # what the connections cost settles with them (no fixed speed is assumed: they are all open)
held_s=$(rss "$server_pid") held_m=$(rss "$mediator_pid")
per_s=$(((held_s - pre_s) * 1024 / 1000)) per_m=$(((held_m - pre_m) * 1024 / 1000))
echo "1,000 idle connections: server $held_s MiB ($per_s KiB each), mediator $held_m MiB ($per_m KiB each)"
((per_s <= PER_CONN_KIB)) || fail "server: $per_s KiB per idle connection (bound $PER_CONN_KIB)"
((per_m <= PER_CONN_KIB)) || fail "mediator: $per_m KiB per idle connection (bound $PER_CONN_KIB)"
kill -TERM -- "-$hold_pgid"

# --- abuse: users that stop reading while lanhost keeps sending.
bg user stall python3 -c '
import socket, time
conns = []
for i in range(4):
    c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.connect(("203.0.113.10", 9300)); conns.append(c)
print("CONNECTED", flush=True)
time.sleep(120)
'
stall_pgid=$(last_bg_pid)
wait_log "$TEST_TMP/stall.log" '^CONNECTED'
# The windows fill, then nothing moves: wait until the server's RSS holds still for 2 s.
end=$((SECONDS + 30)) last=-1 still=0
while ((still < 4)); do
    r=$(rss "$server_pid")
    if ((r == last)); then still=$((still + 1)); else still=0 last=$r; fi
    ((SECONDS < end)) || break
    sleep 0.5
done
s=$(rss "$server_pid") m=$(rss "$mediator_pid")
echo "4 users that stopped reading: server $s MiB (+$((s - start_s))), mediator $m MiB (+$((m - start_m)))"
((s - start_s <= STALL_MIB)) || fail "server RSS grew by $((s - start_s)) MiB with 4 stalled readers (bound $STALL_MIB)"
((m - start_m <= STALL_MIB)) || fail "mediator RSS grew by $((m - start_m)) MiB with 4 stalled readers (bound $STALL_MIB)"
kill -TERM -- "-$stall_pgid"
settled "after the stalled readers closed"
echo "ok: $TEST_NAME"
