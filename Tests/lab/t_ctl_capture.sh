#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `postern ctl capture`: one forward recorded while the server runs, into a file the server makes
# under its state directory (captures/, 0700; the file 0600), downloaded with `ctl capture get`. A
# tcp: forward's capture holds the connection made while it ran — handshake, request, the whole file,
# FIN both ways — and not the one made before it started, not the one to another forward's port, not
# the one after it stopped; a udp: forward's holds its datagrams both ways; tcpdump reads both.
# Bounds and abuse: a capture that reaches --max-bytes ends by itself (the file stays within it and
# reads in tcpdump); removing the forward ends its capture; an unknown forward, a second capture of
# one forward, a size out of range, an unknown id and a wrong admin token are refused in words.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mkdir -p "$TEST_TMP/www"
head -c 30000 /dev/urandom >"$TEST_TMP/www/file.bin"
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_listen lanhost 80
bg lanhost echo python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 7777
wait_log "$TEST_TMP/echo.log" '^listening'
TCP=tcp:0.0.0.0:8080=acme/192.168.77.10:80
OTHER=tcp:0.0.0.0:8081=acme/192.168.77.10:80
UDP=udp:203.0.113.10:7777=acme/192.168.77.10:7777
start_server server --forward "$TCP" --forward "$OTHER" --forward "$UDP"
start_mediator mediator
wait_mediator acme

fetch() { lab exec user curl -sS --fail --max-time 10 -o "$TEST_TMP/got" "http://203.0.113.10:$1/file.bin" || fail "fetch through $1"; }
# field JSON KEY
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

fetch 8080 # before the capture: not in it
started=$(ctl capture start 0.0.0.0:8080 --json) || fail "capture start: $started"
id=$(field "$started" id)
file=$(field "$started" file)
assert_eq recording "$(field "$started" state)" "state of a started capture"
assert_eq "$TCP" "$(field "$started" forward)" "the forward found by its listening address"
udp_started=$(ctl capture start "$UDP" --json) || fail "udp capture start: $udp_started"
udp_id=$(field "$udp_started" id)
assert_eq 600 "$(stat -c %a "$file")" "the capture file's mode"
assert_eq 700 "$(stat -c %a "$(dirname "$file")")" "the captures directory's mode"
assert_eq "$TEST_TMP/state/captures" "$(dirname "$file")" "captures live in the state directory"

fetch 8080
cmp -s "$TEST_TMP/got" "$TEST_TMP/www/file.bin" || fail "the fetched file differs"
fetch 8081 # another forward's port: not in this capture
lab exec user python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.connect(("203.0.113.10", 7777))
for n in (10, 700):
    s.send(bytes([n % 256]) * n); assert len(s.recv(65536)) == n
print("udp: 2 datagrams echoed")' || fail "datagrams through the udp: forward"
sleep 0.5
list=$(ctl capture list) || fail "capture list: $list"
echo "$list"
grep -qE "^$id  recording  forward $TCP  [1-9][0-9]* packets" <<<"$list" || fail "the tcp capture not listed as recording with packets"
ctl capture stop "$id" >/dev/null || fail "capture stop"
ctl capture stop "$udp_id" >/dev/null || fail "udp capture stop"
fetch 8080 # after the stop: not in it

ctl capture get "$id" --to "$TEST_TMP/c.pcap" || fail "capture get"
cmp -s "$TEST_TMP/c.pcap" "$file" || fail "the download differs from the server's file"
dump=$(tcpdump -nn -r "$TEST_TMP/c.pcap" 2>"$TEST_TMP/tcpdump.err") || fail "tcpdump cannot read the capture: $(cat "$TEST_TMP/tcpdump.err")"
assert_eq 1 "$(grep -c 'Flags \[S\]' <<<"$dump")" "connections in the capture (one SYN): $(head -3 <<<"$dump")"
grep -q '\.8081' <<<"$dump" && fail "the other forward's connection is in the capture"
grep -q '203.0.113.20\.[0-9]* > 203.0.113.10.8080: Flags \[F' <<<"$dump" || fail "no FIN from the user"
grep -q '203.0.113.10.8080 > 203.0.113.20\.[0-9]*: Flags \[F' <<<"$dump" || fail "no FIN from the server"
python3 - "$TEST_TMP/c.pcap" "$TEST_TMP/www/file.bin" <<'PY' || fail "the captured bytes are not what was sent"
import struct, sys
data, body = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
at, streams = 24, {}
while at < len(data):
    caplen = struct.unpack("<I", data[at + 8:at + 12])[0]
    pkt = data[at + 16:at + 16 + caplen]
    at += 16 + caplen
    ihl = (pkt[0] & 15) * 4
    sport = struct.unpack(">H", pkt[ihl:ihl + 2])[0]
    streams[sport] = streams.get(sport, b"") + pkt[ihl + (pkt[ihl + 12] >> 4) * 4:]
server = streams.pop(8080)
(client,) = streams.values()
assert client.startswith(b"GET /file.bin HTTP/1.1\r\n"), client[:40]
assert server.startswith(b"HTTP/1.0 200 OK\r\n") and server.endswith(body), server[:40]
print(f"capture: request {len(client)} bytes, response {len(server)} bytes ending in the file")
PY
ctl capture get "$udp_id" --to "$TEST_TMP/u.pcap" || fail "udp capture get"
udp=$(tcpdump -nn -r "$TEST_TMP/u.pcap" 2>/dev/null | grep -cE 'UDP, length (10|700)$' || true)
assert_eq 4 "$udp" "datagrams in the udp: forward's capture"

# Bounded: a 4096-byte capture of a 30 kB fetch ends by itself, within its limit, readable.
small=$(ctl capture start "$TCP" --max-bytes 4096 --json) || fail "small capture: $small"
small_id=$(field "$small" id)
fetch 8080
end=$((SECONDS + 10))
until ctl capture list | grep -qE "^$small_id  stopped .*\(size limit of 4096 bytes reached\)"; do
    ((SECONDS < end)) || fail "the capture did not end at its size limit: $(ctl capture list)"
    sleep 0.2
done
ctl capture get "$small_id" --to "$TEST_TMP/small.pcap" || fail "get the small capture"
size=$(stat -c %s "$TEST_TMP/small.pcap")
((size <= 4096)) || fail "the capture has $size bytes, past its limit"
tcpdump -nn -r "$TEST_TMP/small.pcap" 2>/dev/null | head -1 | grep -q 'Flags \[S\]' || fail "the small capture does not start with the SYN"
echo "size limit: the capture ended at $size bytes: $(ctl capture list | grep -E "^$small_id ")"

# The forward goes: its capture ends.
other=$(ctl capture start "$OTHER" --json) || fail "capture of the other forward: $other"
other_id=$(field "$other" id)
ctl forwards remove "$OTHER" >/dev/null || fail "forwards remove"
ctl capture list | grep -qE "^$other_id  stopped .*\(the forward was removed\)" || fail "removing the forward did not end its capture: $(ctl capture list)"

# Refusals.
expect_exit "capture of an unknown forward" 1 unknown "no forward '0.0.0.0:9999'" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl capture start 0.0.0.0:9999
ctl capture start "$TCP" >/dev/null || fail "a fresh capture of the tcp forward"
expect_exit "a second capture of one forward" 1 twice "is being captured already" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl capture start "$TCP"
expect_exit "a size out of range" 1 size "maxBytes must be 1024 to" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl capture start "$UDP" --max-bytes 100
expect_exit "an unknown capture id" 1 noid "no capture '99'" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl capture get 99 --to "$TEST_TMP/x.pcap"
[[ ! -e "$TEST_TMP/x.pcap" ]] || fail "a file was written for an unknown capture"
expect_exit "a wrong admin token" 1 token "401|unauthori[sz]ed|token" \
    env POSTERN_ADMIN_TOKEN=0123456789abcdef0123456789abcdef "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl capture list
echo "ok: $TEST_NAME"
