#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The server spreads mediator sessions over its event loops (--threads):
#  - three mediators (m1..m3) with a tcp: forward each, on a server with --threads 2: their sessions
#    land on both loops (ctl mediators shows eventLoop), and 6 downloads at once, two per forward,
#    arrive intact (sha256);
#  - ctl status, ctl ports, a forward added at run time (it follows its mediator's loop) all agree;
#  - a mediator killed while downloads run through all three: only its own download breaks, the
#    others finish intact, and when it comes back its forward serves again;
#  - --threads 1 puts every session on loop 0 and still serves;
#  - --threads 0, abc or 65 is refused in words, exit 64.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mkdir -p "$TEST_TMP/www"
head -c $((24 * 1024 * 1024)) /dev/urandom >"$TEST_TMP/www/blob"
want=$(sha256sum <"$TEST_TMP/www/blob" | cut -d' ' -f1)
bg lanhost http python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_tcp lanhost 192.168.77.10 80

start_server server --threads 2 --keepalive 1 --dead-timeout 3 \
    --forward tcp:0.0.0.0:8081=m1/192.168.77.10:80 \
    --forward tcp:0.0.0.0:8082=m2/192.168.77.10:80 \
    --forward tcp:0.0.0.0:8083=m3/192.168.77.10:80
server_pid=$(last_bg_pid)
grep -q '2 event loops: mediator sessions are spread' "$TEST_TMP/server.log" || fail "the server did not say it spreads sessions"

declare -A mpid
start_named() {
    bg lan "$1" "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name "$1" \
        --secret-file "$TEST_TMP/secret" --allow 192.168.77.10:80
    mpid[$1]=$(last_bg_pid)
}
for m in m1 m2 m3; do
    start_named "$m"
    wait_mediator "$m"
done

# eventLoop of each connected mediator, as "name=loop" lines.
loops() {
    ctl mediators --json | python3 -c 'import json,sys
for m in json.load(sys.stdin): print(m["name"] + "=" + str(m["eventLoop"]))' | sort
}
placed=$(loops)
echo "sessions: $(tr '\n' ' ' <<<"$placed")"
distinct=$(cut -d= -f2 <<<"$placed" | sort -u | wc -l)
((distinct == 2)) || fail "three sessions on a server with 2 loops should use both: $placed"

# fetch PORT NAME [CURL ARGS...]: download the blob through the forward on PORT into NAME.
fetch() {
    local port=$1 name=$2; shift 2
    lab exec user curl -sS --max-time 120 "$@" -o "$TEST_TMP/$name" "http://203.0.113.10:$port/blob"
}
check() {
    local got
    got=$(sha256sum <"$TEST_TMP/$1" | cut -d' ' -f1)
    assert_eq "$want" "$got" "$1: sha256"
}

pids=()
for port in 8081 8082 8083; do
    for i in 1 2; do
        fetch "$port" "d$port-$i" &
        pids+=($!)
    done
done
for p in "${pids[@]}"; do wait "$p" || fail "a download failed while all six ran"; done
for port in 8081 8082 8083; do for i in 1 2; do check "d$port-$i"; done; done
echo "6 downloads at once through 3 mediators on 2 loops: intact"

status=$(ctl status --json)
for port in 8081 8082 8083; do
    total=$(python3 -c 'import json,sys
s=json.load(sys.stdin)
print([f for f in s["forwards"] if f["spec"].startswith("tcp:0.0.0.0:'"$port"'=")][0]["connectionsTotal"])' <<<"$status")
    assert_eq 2 "$total" "forward on $port: connections counted"
done
python3 -c 'import json,sys
s=json.load(sys.stdin)
ms=[m for m in s["mediators"] if m["connected"]]
assert len(ms)==3, ms
assert all(m["bytesOut"]>24*1024*1024 or m["bytesIn"]>24*1024*1024 for m in ms), ms' <<<"$status" \
    || fail "ctl status: every mediator should show its two downloads: $status"
ctl ports m2 >/dev/null || fail "ctl ports m2"
echo "ctl status and ctl ports: consistent"

# A forward added at run time serves at once, on its mediator's loop.
out=$(ctl forwards add "tcp:0.0.0.0:8084=m2/192.168.77.10:80") || fail "ctl forwards add: $out"
wait_listen wan 8084
fetch 8084 added || fail "download through the added forward"
check added
ctl forwards remove "tcp:0.0.0.0:8084=m2/192.168.77.10:80" >/dev/null || fail "ctl forwards remove"
echo "a forward added at run time: served, removed"

# Kill m3 while downloads run through all three (slowed so they are still running).
pids=()
for port in 8081 8082; do
    fetch "$port" "k$port" --limit-rate 8M &
    pids+=($!)
done
fetch 8083 k8083 --limit-rate 8M &
victim=$!
sleep 1
kill -KILL -- "-${mpid[m3]}"
for p in "${pids[@]}"; do wait "$p" || fail "a download through another mediator broke when m3 was killed"; done
check k8081
check k8082
if wait "$victim"; then
    # curl may have been given all of it in the moment before the kill; then it must be intact.
    check k8083
    echo "m3's download had finished before the kill"
else
    echo "m3's download broke with its mediator, as it must"
fi
echo "m3 killed while traffic flowed: the other mediators' downloads intact"
start_named m3
wait_mediator m3 20
fetch 8083 back || fail "download through m3 after it came back"
check back
echo "m3 back: its forward serves again ($(loops | tr '\n' ' '))"

# --threads 1: every session on loop 0, as before.
kill -TERM -- "-$server_pid"
end=$((SECONDS + 10))
while kill -0 "$server_pid" 2>/dev/null; do
    ((SECONDS < end)) || fail "the server did not stop on SIGTERM"
    sleep 0.1
done
start_server server1 --threads 1 --keepalive 1 --dead-timeout 3 \
    --forward tcp:0.0.0.0:8081=m1/192.168.77.10:80 \
    --forward tcp:0.0.0.0:8082=m2/192.168.77.10:80
for m in m1 m2 m3; do wait_mediator "$m" 20; done
placed=$(loops)
assert_eq "0" "$(cut -d= -f2 <<<"$placed" | sort -u | tr -d '\n')" "--threads 1: every session on loop 0 ($placed)"
fetch 8082 one || fail "download with --threads 1"
check one
echo "--threads 1: one loop, serves"

for bad in 0 abc 65; do
    expect_exit "--threads $bad" 64 "bad$bad" 'threads' \
        "$LAB_TOOL" exec wan "$POSTERN_BIN" server --listen 0.0.0.0:7001 --secret-file "$TEST_TMP/secret" --threads "$bad"
done
echo "ok: $TEST_NAME"
