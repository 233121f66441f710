#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Per-forward options (issue 14, item 6), each on forwards of one mediator:
#  - proxy=v1 / proxy=v2: the LAN server (proxy_logger.py) sees the user's address 203.0.113.20 (and
#    2001:db8:113::20 over IPv6), not the mediator's; also on a forward added by `ctl forwards add`
#    (a bad option there is refused), which `ctl forwards remove` finds without its options;
#  - allow=: a forward whose list excludes the user turns it away at accept — no CONNECT reaches the
#    LAN — and counts a policy denial in /metrics and ctl status; one whose list includes it serves;
#    a udp: forward drops and counts datagrams from outside its list;
#  - rate=1M: a 4 MiB download and a 4 MiB upload move at 1 MB/s (curl's speed within ±25%) while
#    an unlimited forward of the same mediator, downloading at the same time, is not slowed; a udp:
#    forward over its rate drops and counts datagrams;
#  - abuse: a user that stops reading a download on the rate-limited forward does not make the
#    server buffer: the forward's byte counter stops and the server's RSS stays put.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

bg lanhost web python3 "$LAB_REPO/Tests/lab/proxy_logger.py" 192.168.77.10 9000
bg lanhost echo python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
wait_listen lanhost 9000
wait_log "$TEST_TMP/echo.log" '^listening'
T=acme/192.168.77.10:9000
start_server server --keepalive 1 --metrics 203.0.113.10:9100 \
    --forward "tcp:0.0.0.0:8081=$T,proxy=v1" \
    --forward "tcp:[::]:8082=$T,proxy=v2" \
    --forward "tcp:0.0.0.0:8083=$T,allow=198.51.100.0/24,allow=2001:db8:1::/48" \
    --forward "tcp:0.0.0.0:8084=$T,allow=198.51.100.0/24,allow=203.0.113.20" \
    --forward "tcp:0.0.0.0:8085=$T,rate=1M" \
    --forward "tcp:0.0.0.0:8086=$T" \
    --forward "udp:0.0.0.0:5353=acme/192.168.77.10:5353,allow=198.51.100.0/24" \
    --forward "udp:0.0.0.0:5354=acme/192.168.77.10:5353,rate=20K"
start_mediator mediator
wait_mediator acme
metrics=http://203.0.113.10:9100/metrics
# metric NAME FORWARD-PREFIX [EXTRA-LABEL] -> its value
metric() {
    lab exec wan curl -sS --max-time 5 "$metrics" \
        | awk -v n="$1{" -v f="forward=\"$2" -v x="${3:-}" 'index($0, n) == 1 && index($0, f) && index($0, x) { print $NF }'
}
get() { lab exec user curl -sS --max-time 10 "$@"; }

# 1. PROXY protocol: the LAN server's log names the user.
who=$(get http://203.0.113.10:8081/who)
echo "proxy=v1: $who"
[[ "$who" =~ ^v1\ 203\.0\.113\.20:[0-9]+\ -\>\ 203\.0\.113\.10:8081$ ]] || fail "proxy=v1: the LAN server saw '$who'"
who=$(get "http://[2001:db8:113::10]:8082/who")
echo "proxy=v2 (IPv6): $who"
[[ "$who" =~ ^v2\ 2001:db8:113::20:[0-9]+\ -\>\ 2001:db8:113::10:8082$ ]] || fail "proxy=v2 over IPv6: the LAN server saw '$who'"
who=$(get http://203.0.113.10:8082/who)
echo "proxy=v2 (IPv4 on a dual-stack listener): $who"
[[ "$who" =~ ^v2\ 203\.0\.113\.20:[0-9]+\ -\>\ 203\.0\.113\.10:8082$ ]] || fail "proxy=v2 over IPv4: the LAN server saw '$who'"
# A request sent with its FIN before the mediator connected still comes after the header.
who=$(lab exec user python3 -c '
import socket
s = socket.create_connection(("203.0.113.10", 8081), timeout=10)
s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
s.shutdown(socket.SHUT_WR)
print(s.makefile("rb").read().split(b"\r\n\r\n", 1)[1].decode().strip())')
[[ "$who" =~ ^v1\ 203\.0\.113\.20: ]] || fail "proxy=v1 with an early request and FIN: '$who'"
who=$(get http://203.0.113.10:8086/who)
[[ "$who" =~ ^none\ 192\.168\.77\.2: ]] || fail "a forward without proxy= sends no header: '$who'"
grep -q '^bad' "$TEST_TMP/web.log" && fail "the LAN server found a malformed header"
# Through the admin API: added with options, removed by its spec without them.
ctl forwards add "tcp:0.0.0.0:8087=$T,allow=203.0.113.0/24,proxy=v1" >/dev/null || fail "ctl forwards add with options"
wait_listen wan 8087
who=$(get http://203.0.113.10:8087/who)
[[ "$who" =~ ^v1\ 203\.0\.113\.20: ]] || fail "a forward added by ctl with proxy=v1: '$who'"
if ctl forwards add "tcp:0.0.0.0:8088=$T,proxy=v9" >/dev/null 2>&1; then fail "ctl forwards add took proxy=v9"; fi
ctl forwards remove "tcp:0.0.0.0:8087=$T" >/dev/null || fail "ctl forwards remove without the options"
end=$((SECONDS + 10))
while lab exec wan ss -Htln "sport = :8087" | grep -q .; do
    ((SECONDS < end)) || fail "the removed forward still listens"
    sleep 0.1
done
echo "ctl forwards add with options (proxy=v1 seen), remove without them: ok"

# 2. allow=: turned away at accept, counted; served when listed.
conns_before=$(grep -c . "$TEST_TMP/web.log")
for i in 1 2 3; do
    if get -o /dev/null http://203.0.113.10:8083/who 2>/dev/null; then fail "allow= excluding the user: request $i was served"; fi
done
denials=$(metric postern_forward_policy_denials_total "tcp:0.0.0.0:8083=$T,allow=")
assert_eq 3 "$denials" "policy denials of the excluding forward in /metrics"
assert_eq 0 "$(metric postern_forward_connections_total "tcp:0.0.0.0:8083=$T,allow=")" "connections relayed by the excluding forward"
assert_eq "$conns_before" "$(grep -c . "$TEST_TMP/web.log")" "connections that reached the LAN server from the excluding forward"
ctl status | grep -E "^tcp:0\.0\.0\.0:8083=" | tee "$TEST_TMP/status.out"
awk '{ print $(NF-1) }' "$TEST_TMP/status.out" | grep -qx 3 || fail "ctl status: DENIED column of the excluding forward is not 3"
grep -q 'connection from 203.0.113.20 refused: not in its allow= list' "$TEST_TMP/server.log" || fail "no log line for the denial"
who=$(get http://203.0.113.10:8084/who)
[[ "$who" =~ ^none\  ]] || fail "allow= including the user: '$who'"
assert_eq 0 "$(metric postern_forward_policy_denials_total "tcp:0.0.0.0:8084=$T,allow=")" "denials of the including forward"
echo "allow=: 3 connections turned away and counted, the listed user served"
lab exec user python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.connect(("203.0.113.10", 5353))
for i in range(5):
    s.send(b"x" * 100)
try:
    s.recv(2000)
    raise SystemExit("a datagram from outside the allow= list came back")
except socket.timeout:
    pass'
assert_eq 5 "$(metric postern_forward_policy_denials_total "udp:0.0.0.0:5353=")" "udp allow=: datagrams denied"
grep -q '^100 bytes' "$TEST_TMP/echo.log" && fail "a datagram from outside the allow= list reached the LAN"
echo "udp allow=: 5 datagrams dropped and counted"

# 3. rate=1M: a 4 MiB download at about 1 MB/s while the unlimited forward downloads at once.
lab exec user curl -sS --max-time 30 -o /dev/null -w '%{speed_download} %{time_total}\n' \
    http://203.0.113.10:8085/bytes/4194304 >"$TEST_TMP/limited.out" 2>&1 &
limited_pid=$!
sleep 0.5
read -r fast fast_time < <(lab exec user curl -sS --max-time 30 -o /dev/null -w '%{speed_download} %{time_total}\n' \
    http://203.0.113.10:8086/bytes/4194304)
wait "$limited_pid" || fail "the rate-limited download failed: $(cat "$TEST_TMP/limited.out")"
read -r slow slow_time <"$TEST_TMP/limited.out"
echo "rate=1M download: $slow B/s in $slow_time s; unlimited at the same time: $fast B/s in $fast_time s"
python3 - "$slow" "$fast" <<'PY' || fail "rate=1M download speeds"
import sys
slow, fast = float(sys.argv[1]), float(sys.argv[2])
assert 750_000 <= slow <= 1_250_000, f"rate-limited download at {slow:.0f} B/s, not 1 MB/s ±25%"
assert fast >= 2.5e6, f"the unlimited forward moved only {fast:.0f} B/s: slowed by its neighbour?"
PY
head -c 4194304 /dev/zero >"$TEST_TMP/upload.bin"
read -r up up_time < <(lab exec user curl -sS --max-time 30 -o /dev/null -w '%{speed_upload} %{time_total}\n' \
    -H 'Expect:' -T "$TEST_TMP/upload.bin" http://203.0.113.10:8085/sink)
echo "rate=1M upload: $up B/s in $up_time s"
python3 -c "import sys; v=float('$up'); sys.exit(0 if 750_000 <= v <= 1_250_000 else 1)" \
    || fail "rate-limited upload at $up B/s, not 1 MB/s ±25%"

# udp rate=20K (a 64 KiB burst): 300 datagrams of 1000 bytes at once; most are dropped and counted.
received=$(lab exec user python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
s.connect(("203.0.113.10", 5354))
for i in range(300):
    s.send(b"r" * 1000)
n = 0
try:
    while True:
        s.recv(2000)
        n += 1
except socket.timeout:
    print(n)')
drops=$(metric postern_forward_rate_limit_drops_total "udp:0.0.0.0:5354=")
echo "udp rate=20K: $received of 300 datagrams came back, $drops drops counted"
((received >= 20 && received <= 140)) || fail "udp rate=20K: $received of 300 came back (the burst is 65 datagrams)"
((drops >= 160)) || fail "udp rate=20K: only $drops drops counted"

# 4. Abuse: a user that stops reading a 200 MB download on the rate-limited forward.
rss() { lab exec wan curl -sS --max-time 5 "$metrics" | awk '/^process_resident_memory_bytes/ { print $NF }'; }
rss_before=$(rss)
setsid "$LAB_TOOL" exec user python3 -c '
import socket, time
s = socket.create_connection(("203.0.113.10", 8085))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.sendall(b"GET /bytes/200000000 HTTP/1.0\r\n\r\n")
s.recv(100000)
print("stopped reading", flush=True)
time.sleep(600)' >"$TEST_TMP/staller.log" 2>&1 </dev/null &
_LAB_PIDS+=("$!")
wait_log "$TEST_TMP/staller.log" '^stopped reading' 15
from="tcp:0.0.0.0:8085=$T,rate=1M"
# Wait until the counter stands still for 3 s (at 1 MB/s a moving transfer adds 3 MB).
end=$((SECONDS + 30))
prev=$(metric postern_forward_bytes_total "$from" from_mediator)
while :; do
    sleep 3
    now=$(metric postern_forward_bytes_total "$from" from_mediator)
    python3 -c "import sys; sys.exit(0 if float('$now') - float('$prev') < 100_000 else 1)" && break
    ((SECONDS < end)) || fail "the stalled download kept moving: $prev -> $now bytes"
    prev=$now
done
rss_after=$(rss)
echo "stalled reader: the forward's counter stopped at $now bytes (of 200 MB); server RSS $rss_before -> $rss_after"
python3 - "$now" "$rss_before" "$rss_after" <<'PY' || fail "a stalled reader made the server buffer"
import sys
moved, before, after = (float(x) for x in sys.argv[1:])
# Earlier downloads (8 MiB) + the stalled one up to the socket buffers and one port window.
assert moved < 8.5e6 + 2.5e7, f"{moved:.0f} bytes moved toward a reader that stopped"
assert after - before < 30e6, f"RSS grew by {(after - before) / 1e6:.1f} MB"
PY
echo "ok: $TEST_NAME"
