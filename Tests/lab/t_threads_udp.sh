#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Every forward shape runs on its mediator's event loop, so none keeps the sessions on loop 0:
#  - a server with --threads 2 and two mediators (m1, m2), each with a udp: forward to a LAN echo,
#    a udp:NAME/ forward from its LAN to an echo in wan, and a tcp:NAME/ forward from its LAN to a
#    web server in wan, and a SOCKS5 listener for m2 whose account cannot choose another mediator:
#    the server says it spreads, and the two sessions sit on two loops (ctl mediators --json shows
#    eventLoop);
#  - 3 MiB of numbered datagrams through each udp: forward, both directions, all four at once, come
#    back intact (sha256 over the payloads in order; a lost datagram is sent again), and a download
#    through each tcp:NAME/ forward and one through the SOCKS5 listener arrive intact;
#  - both sessions' datagrams took their UDP channels, whose datagrams the kernel hands to the UDP
#    socket of each session's own loop (a datagram on another loop's socket would be stray, and the
#    channel would not carry the bulk);
#  - the sessions stayed where they were, nothing was refused (a datagram read on another loop than
#    its mediator's session would be), and no line about keeping sessions on the first loop.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# bulk.py HOST PORT MIB: numbered datagrams of 1,200 bytes, 32 in flight, each one sent again until
# its echo comes back; every echo must equal what was sent. Prints the sha256 of all payloads sent
# and of all echoes, in order.
cat >"$TEST_TMP/bulk.py" <<'PY'
import hashlib, os, socket, struct, sys, time
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = (mib << 20) // 1200
payloads = [struct.pack("!I", i) + os.urandom(1196) for i in range(n)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
s.settimeout(0.3)
back = [None] * n
deadline = time.time() + 120
i = 0
while i < n:
    window = [j for j in range(i, min(i + 32, n)) if back[j] is None]
    if not window:
        i += 32
        continue
    assert time.time() < deadline, f"{sum(b is None for b in back)} of {n} datagrams never came back"
    for j in window:
        s.send(payloads[j])
    try:
        while any(back[j] is None for j in window):
            d = s.recv(65536)
            k = struct.unpack("!I", d[:4])[0]
            assert k < n and d == payloads[k], f"datagram {k} came back changed"
            back[k] = d
    except socket.timeout:
        pass
print("sent", hashlib.sha256(b"".join(payloads)).hexdigest())
print("back", hashlib.sha256(b"".join(back)).hexdigest())
PY

mkdir -p "$TEST_TMP/www"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$TEST_TMP/www/blob"
want=$(sha256sum <"$TEST_TMP/www/blob" | cut -d' ' -f1)
bg wan http python3 -m http.server 8080 --bind 203.0.113.10 --directory "$TEST_TMP/www"
bg lanhost http_lan python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_tcp lanhost 192.168.77.10 80
printf 'bob %s\n' "socks-pass-1234" >"$TEST_TMP/users"
chmod 600 "$TEST_TMP/users"
bg lanhost echo_lan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
bg wan echo_wan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 203.0.113.10 5000
wait_tcp wan 203.0.113.10 8080
wait_log "$TEST_TMP/echo_lan.log" '^listening'
wait_log "$TEST_TMP/echo_wan.log" '^listening'

start_server server --threads 2 --keepalive 1 --dead-timeout 3 \
    --forward udp:0.0.0.0:5351=m1/192.168.77.10:5353 \
    --forward udp:0.0.0.0:5352=m2/192.168.77.10:5353 \
    --forward udp:m1/0.0.0.0:5001=203.0.113.10:5000 \
    --forward udp:m2/0.0.0.0:5002=203.0.113.10:5000 \
    --forward tcp:m1/0.0.0.0:9001=203.0.113.10:8080 \
    --forward tcp:m2/0.0.0.0:9002=203.0.113.10:8080 \
    --socks 0.0.0.0:1080=m2 --socks-users "$TEST_TMP/users"
grep -q '2 event loops: mediator sessions are spread' "$TEST_TMP/server.log" \
    || fail "the server did not say it spreads sessions: $(grep -i 'event loop' "$TEST_TMP/server.log")"

for m in m1 m2; do
    bg lan "$m" "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name "$m" \
        --secret-file "$TEST_TMP/secret" --allow 192.168.77.10:5353 --allow 192.168.77.10:80 --allow-listen
    wait_mediator "$m"
done
for port in 5001 5002; do wait_listen lan "$port" udp; done
for port in 9001 9002; do wait_listen lan "$port" tcp; done

# eventLoop of each connected mediator, as "name=loop" lines.
loops() {
    ctl mediators --json | python3 -c 'import json,sys
for m in json.load(sys.stdin): print(m["name"] + "=" + str(m["eventLoop"]))' | sort
}
placed=$(loops)
echo "sessions: $(tr '\n' ' ' <<<"$placed")"
distinct=$(cut -d= -f2 <<<"$placed" | sort -u | wc -l)
((distinct == 2)) || fail "two sessions on a server with 2 loops should use both: $placed"

# on_udp: both sessions carry their datagrams on their UDP channels.
on_udp() {
    ctl status --json | python3 -c 'import json,sys
ms=[m for m in json.load(sys.stdin)["mediators"] if m["connected"]]
sys.exit(0 if len(ms)==2 and all(m["datagramPath"]=="udp" for m in ms) else 1)'
}
end=$((SECONDS + 15))
until on_udp; do
    ((SECONDS < end)) || fail "the UDP channels did not come up: $(ctl status --json)"
    sleep 0.2
done

# All four bulk transfers at once: to each mediator's LAN, and from it.
pids=()
lab exec user python3 "$TEST_TMP/bulk.py" 203.0.113.10 5351 3 >"$TEST_TMP/to-m1.out" 2>&1 &
pids+=($!)
lab exec user python3 "$TEST_TMP/bulk.py" 203.0.113.10 5352 3 >"$TEST_TMP/to-m2.out" 2>&1 &
pids+=($!)
lab exec lanhost python3 "$TEST_TMP/bulk.py" 192.168.77.2 5001 3 >"$TEST_TMP/from-m1.out" 2>&1 &
pids+=($!)
lab exec lanhost python3 "$TEST_TMP/bulk.py" 192.168.77.2 5002 3 >"$TEST_TMP/from-m2.out" 2>&1 &
pids+=($!)
for p in "${pids[@]}"; do wait "$p" || true; done
for run in to-m1 to-m2 from-m1 from-m2; do
    sent=$(awk '$1 == "sent" { print $2 }' "$TEST_TMP/$run.out")
    back=$(awk '$1 == "back" { print $2 }' "$TEST_TMP/$run.out")
    [[ -n $sent ]] || fail "$run: $(cat "$TEST_TMP/$run.out")"
    assert_eq "$sent" "$back" "$run: sha256 of 3 MiB of datagrams"
done
echo "3 MiB of datagrams through each udp: forward, both ways, four at once: intact"

for port in 9001 9002; do
    lab exec lanhost curl -sS --max-time 60 -o "$TEST_TMP/d$port" "http://192.168.77.2:$port/blob" \
        || fail "download through tcp: forward on the mediator's $port"
    assert_eq "$want" "$(sha256sum <"$TEST_TMP/d$port" | cut -d' ' -f1)" "download through $port: sha256"
done
echo "a download through each tcp:NAME/ forward: intact"
lab exec user curl -sS --fail --max-time 60 -x "socks5://bob:socks-pass-1234@203.0.113.10:1080" \
    -o "$TEST_TMP/dsocks" "http://192.168.77.10/blob" || fail "download through the SOCKS5 listener"
assert_eq "$want" "$(sha256sum <"$TEST_TMP/dsocks" | cut -d' ' -f1)" "download through SOCKS5: sha256"
echo "a download through m2's SOCKS5 listener: intact"

assert_eq "$placed" "$(loops)" "the sessions stayed on their loops"
status=$(ctl status --json)
python3 -c 'import json,sys
s=json.load(sys.stdin)
for f in s["forwards"]:
    assert f["state"] == "listening", f
    assert f["connectionsTotal"] > 0 and f["refusals"] == 0 and f["errors"] == 0, f
    assert f["bytesToMediator"] > 0 and f["bytesFromMediator"] > 0, f
for m in s["mediators"]:
    # 2 x 3 MiB in 1,200-byte datagrams reached the server through each UDP channel.
    assert m["datagramPath"] == "udp" and m["udpReceived"] > 5000, m' <<<"$status" \
    || fail "ctl status: every forward should have carried traffic with no refusal: $status"
if grep -E 'stay on the first|ending its session on another event loop' "$TEST_TMP/server.log"; then
    fail "the server kept sessions on the first loop"
fi
echo "sessions still spread ($(tr '\n' ' ' <<<"$placed")), no refusal, no pinning"
echo "ok: $TEST_NAME"
