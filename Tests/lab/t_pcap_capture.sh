#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `postern server --pcap FILE` and `postern mediator --pcap FILE` record what their sockets carried:
# curl in user fetches a file from lanhost through a tcp: forward and three datagrams go through a
# udp: forward. The server's pcap opens in tcpdump and holds one connection with handshake, the
# request, the whole file (byte for byte) and FIN both ways, and the six datagrams; the mediator's
# holds the same on its LAN side plus the connection a reverse forward accepted from lanhost; the
# server's also holds its own side of the reverse forwards (its connection to the target in wan with
# the bytes both ways, and a reverse udp: forward's datagrams to and from its target); postern's
# own reader finds the flows complete. Rotation keeps at most --pcap-files files of about
# --pcap-max-bytes each; a --pcap path that cannot be written stops the server or the mediator at
# start with the file named.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mkdir -p "$TEST_TMP/www"
head -c 50000 /dev/urandom >"$TEST_TMP/www/file.bin"
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_listen lanhost 80
bg lanhost echo python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 7777
wait_log "$TEST_TMP/echo.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 \
    --forward udp:203.0.113.10:7777=acme/192.168.77.10:7777 --forward tcp:acme/0.0.0.0:9090=203.0.113.10:8088 \
    --forward udp:acme/0.0.0.0:9191=203.0.113.10:7778 --pcap "$TEST_TMP/fwd.pcap"
server_pid=$(last_bg_pid)
start_mediator mediator --allow-listen --pcap "$TEST_TMP/med.pcap"
wait_mediator acme

lab exec user curl -sS --fail --max-time 10 -o "$TEST_TMP/got" http://203.0.113.10:8080/file.bin || fail "fetch through the forward"
cmp -s "$TEST_TMP/got" "$TEST_TMP/www/file.bin" || fail "the fetched file differs"
# Three datagrams through the udp: forward, each echoed.
lab exec user python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.connect(("203.0.113.10", 7777))
for n in (10, 700, 1400):
    s.send(bytes([n % 256]) * n); assert len(s.recv(65536)) == n
print("udp: 3 datagrams echoed")' || fail "datagrams through the udp: forward"
# A reverse forward: lanhost connects to the mediator's 9090, relayed to a server in wan.
bg wan revsrv python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 8088)); s.listen(4); print("listening", flush=True)
c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()'
wait_log "$TEST_TMP/revsrv.log" '^listening'
wait_listen lan 9090
got=$(lab exec lanhost python3 -c '
import socket
c = socket.create_connection(("192.168.77.2", 9090), timeout=5); c.sendall(b"reverse\n")
print(c.recv(100).decode().strip())') || fail "reverse forward: $got"
assert_eq "REVERSE" "$got" "echo through the reverse forward"
# A reverse udp: forward: lanhost's datagrams to the mediator's 9191 reach an echo in wan.
bg wan revecho python3 "$LAB_REPO/Tests/lab/udp_echo.py" 203.0.113.10 7778
wait_log "$TEST_TMP/revecho.log" '^listening'
wait_listen lan 9191 udp
lab exec lanhost python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.connect(("192.168.77.2", 9191))
for n in (33, 333):
    s.send(b"r" * n); assert len(s.recv(65536)) == n
print("reverse udp: 2 datagrams echoed")' || fail "datagrams through the reverse udp: forward"
sleep 0.5

# tcpdump opens it: SYN first, FIN from both sides.
dump=$(tcpdump -nn -r "$TEST_TMP/fwd.pcap" 2>"$TEST_TMP/tcpdump.err") || fail "tcpdump cannot read the pcap: $(cat "$TEST_TMP/tcpdump.err")"
echo "tcpdump: $(grep -c . <<<"$dump") packets"
udp=$(grep -E '203\.0\.113\.(20\.[0-9]+ > 203\.0\.113\.10\.7777|10\.7777 > 203\.0\.113\.20\.[0-9]+): UDP, length (10|700|1400)$' <<<"$dump" | grep -c . || true)
assert_eq 6 "$udp" "UDP packets of the udp: forward in the pcap: $(grep -v Flags <<<"$dump" | head -8)"
head -n 1 <<<"$dump" | grep -q 'Flags \[S\]' || fail "first packet is not a SYN: $(head -n 2 <<<"$dump")"
grep -q '203.0.113.20\.[0-9]* > 203.0.113.10.8080: Flags \[F' <<<"$dump" || fail "no FIN from the user"
grep -q '203.0.113.10.8080 > 203.0.113.20\.[0-9]*: Flags \[F' <<<"$dump" || fail "no FIN from the server"
tcpdump -nn -v -r "$TEST_TMP/fwd.pcap" 2>/dev/null | grep -qi 'incorrect' && fail "tcpdump finds a wrong checksum"

# The bytes: the server->user stream is the HTTP response ending in the file; user->server is the GET.
# The same on the mediator's side (192.168.77.2 -> lanhost:80), and the datagrams on both sides.
cat >"$TEST_TMP/check.py" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
body = open(sys.argv[2], "rb").read()
tcp_port, udp_port = int(sys.argv[3]), int(sys.argv[4])
magic, = struct.unpack("<I", data[:4])
assert magic == 0xa1b23c4d, hex(magic)       # nanosecond pcap
assert struct.unpack("<I", data[20:24])[0] in (101, 12), "not raw IP"
at, streams, datagrams = 24, {}, []
while at < len(data):
    _, _, caplen, _ = struct.unpack("<IIII", data[at:at + 16])
    pkt = data[at + 16:at + 16 + caplen]
    at += 16 + caplen
    ihl = (pkt[0] & 15) * 4
    sport, dport = struct.unpack(">HH", pkt[ihl:ihl + 4])
    if pkt[9] == 17:
        if udp_port in (sport, dport):  # the reverse udp: forward's datagrams are checked apart
            datagrams.append(len(pkt) - ihl - 8)
        continue
    off = (pkt[ihl + 12] >> 4) * 4
    if tcp_port not in (sport, dport):
        continue
    streams.setdefault(sport, b"")
    streams[sport] += pkt[ihl + off:]
server = streams.pop(tcp_port)
(client,) = streams.values()
assert client.startswith(b"GET /file.bin HTTP/1.1\r\n"), client[:40]
assert server.startswith(b"HTTP/1.0 200 OK\r\n") and server.endswith(body), server[:40]
assert sorted(datagrams) == [10, 10, 700, 700, 1400, 1400], datagrams
print(f"{sys.argv[1].split('/')[-1]}: request {len(client)} bytes, response {len(server)} bytes ending in the file, 6 datagrams")
PY
python3 "$TEST_TMP/check.py" "$TEST_TMP/fwd.pcap" "$TEST_TMP/www/file.bin" 8080 7777 || fail "the server's recorded bytes are not what was sent"
python3 "$TEST_TMP/check.py" "$TEST_TMP/med.pcap" "$TEST_TMP/www/file.bin" 80 7777 || fail "the mediator's recorded bytes are not what was sent"
tcpdump -nn -r "$TEST_TMP/med.pcap" 2>/dev/null | grep -q '192.168.77.2\.[0-9]* > 192.168.77.10.80: Flags \[S\]' \
    || fail "the mediator's pcap has no SYN from 192.168.77.2 to lanhost:80"
# The reverse forward's accepted connection, from lanhost to the mediator, with its bytes.
rev=$(tcpdump -nn -A -r "$TEST_TMP/med.pcap" 2>/dev/null | grep -A3 '192.168.77.10\.[0-9]* > 192.168.77.2.9090')
grep -q 'Flags \[S\]' <<<"$rev" || fail "no SYN of the reverse forward's connection in the mediator's pcap"
grep -q 'reverse' <<<"$rev" || fail "the reverse forward's bytes are not in the mediator's pcap"
echo "med.pcap: the reverse forward's connection from lanhost, with its bytes"
# The server's side of the reverse forwards: its connection to the target (SYN from the server's
# address to 8088, the bytes both ways, FIN) and the reverse udp: forward's datagrams to 7778 and back.
srv=$(tcpdump -nn -A -r "$TEST_TMP/fwd.pcap" 2>/dev/null)
grep -qE '203\.0\.113\.10\.[0-9]+ > 203\.0\.113\.10\.8088: Flags \[S\]' <<<"$srv" ||
    fail "no SYN of the server's connection to the reverse forward's target in the server's pcap"
grep -A3 -E '203\.0\.113\.10\.[0-9]+ > 203\.0\.113\.10\.8088: Flags \[P' <<<"$srv" | grep -q 'reverse' ||
    fail "the bytes the server sent to the reverse forward's target are not in its pcap"
grep -A3 -E '203\.0\.113\.10\.8088 > 203\.0\.113\.10\.[0-9]+: Flags \[P' <<<"$srv" | grep -q 'REVERSE' ||
    fail "the target's answer is not in the server's pcap"
grep -qE '203\.0\.113\.10\.8088 > 203\.0\.113\.10\.[0-9]+: Flags \[F' <<<"$srv" || fail "no FIN from the reverse forward's target"
rudp=$(grep -cE '203\.0\.113\.10\.([0-9]+ > 203\.0\.113\.10\.7778|7778 > 203\.0\.113\.10\.[0-9]+): UDP, length (33|333)$' <<<"$srv" || true)
assert_eq 4 "$rudp" "the reverse udp: forward's datagrams in the server's pcap"
echo "fwd.pcap: the server's side of both reverse forwards, with their bytes"

list=$("$POSTERN_BIN" replay "$TEST_TMP/fwd.pcap") || fail "postern cannot read its own pcap: $list"
echo "$list"
assert_contains "$list" "closed -- replayable" "the recorded connection, read back"
assert_contains "$list" "udp 203.0.113.20:" "the recorded datagrams, read back"

# --- rotation: files of ~20 kB, at most 3, after three fetches of 50 kB
kill -TERM -- "-$server_pid"
for _ in $(seq 50); do kill -0 -- "-$server_pid" 2>/dev/null || break; sleep 0.1; done
start_server server2 --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 \
    --pcap "$TEST_TMP/rot.pcap" --pcap-max-bytes 20000 --pcap-files 3
wait_mediator acme 20
for i in 1 2 3; do
    lab exec user curl -sS --fail --max-time 10 -o /dev/null http://203.0.113.10:8080/file.bin || fail "fetch $i"
done
sleep 0.5
for f in rot.pcap rot.pcap.1 rot.pcap.2; do
    [[ -s "$TEST_TMP/$f" ]] || fail "$f missing"
    size=$(stat -c %s "$TEST_TMP/$f")
    ((size <= 20000)) || fail "$f has $size bytes, more than --pcap-max-bytes"
    tcpdump -nn -r "$TEST_TMP/$f" >/dev/null 2>&1 || fail "tcpdump cannot read $f"
done
[[ ! -e "$TEST_TMP/rot.pcap.3" ]] || fail "more than --pcap-files files"
echo "rotation: $(ls "$TEST_TMP" | grep -c '^rot.pcap') files of at most 20000 bytes"

# --- abuse: a --pcap path that cannot be written
expect_exit "server with an unwritable --pcap" 1 bad "no/such/dir/x.pcap" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" server --listen 0.0.0.0:7100 --secret-file "$TEST_TMP/secret" \
    --pcap "$TEST_TMP/no/such/dir/x.pcap"
expect_exit "mediator with an unwritable --pcap" 1 badm "no/such/dir/m.pcap" \
    "$LAB_TOOL" exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name other --secret-file "$TEST_TMP/secret" \
    --pcap "$TEST_TMP/no/such/dir/m.pcap"
echo "ok: $TEST_NAME"
