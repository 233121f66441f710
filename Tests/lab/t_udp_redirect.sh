#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# REDIRECT (docs/protocol.md §5.2) through the real NAT, on a mediator with --allow-redirect and
# without --allow-listen:
#  - udp:acme/0.0.0.0:5000=203.0.113.10:6000: the forward's port is a redirected one; two LAN
#    senders in lanhost each get their own answers of the echo in wan, over the UDP channel;
#  - ctl redirect acme 5100 --to 203.0.113.10:6000 prints the port id and port and relays the
#    same way; ctl redirect without --to reports the datagrams as events;
#  - abuse: the same port again (in use), a protected address, a flood of 400 LAN senders (the
#    server keeps --udp-max-flows sockets for them, and logs it), and a
#    mediator without --allow-redirect refuses ctl redirect; with --allow-listen the forward falls
#    back to OPEN and works as before.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# two.py HOST PORT: two senders, 5 datagrams each (1,400 and 8,000 bytes among them); each must get back
# exactly its own datagrams, from HOST:PORT.
cat >"$TEST_TMP/two.py" <<'PY'
import os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.connect((host, port))
    socks.append(s)
for i, s in enumerate(socks):
    mine = [bytes([i]) + os.urandom(n) for n in (1, 200, 1400, 8000, 33)]
    want = set(mine)
    for attempt in range(5):
        for d in want:
            s.send(d)
        try:
            while want:
                got = s.recv(65536)
                assert got in mine, f"sender {i} got a datagram it never sent ({len(got)} bytes, first byte {got[:1]})"
                want.discard(got)
        except TimeoutError:
            continue
        break
    assert not want, f"sender {i}: {len(want)} datagrams never came back"
print("two senders, each got its own answers")
PY

# flood.py HOST PORT N: one datagram from each of N new source ports, then nothing.
cat >"$TEST_TMP/flood.py" <<'PY'
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"flood %d" % i, (host, port))
    held.append(s)
print(f"{n} senders sent")
PY

bg wan echo_wan python3 "$LAB_REPO/Tests/lab/udp_echo.py" 203.0.113.10 6000
wait_log "$TEST_TMP/echo_wan.log" '^listening'
start_server server --keepalive 1 --dead-timeout 3 --udp-keepalive 1 --udp-max-flows 32 \
    --forward udp:acme/0.0.0.0:5000=203.0.113.10:6000
start_mediator mediator --allow-redirect --udp-keepalive 1
wait_mediator acme
wait_listen lan 5000 udp
end=$((SECONDS + 10))
until [[ $(field path) == udp ]]; do ((SECONDS < end)) || fail "no UDP channel: $(ctl mediators)"; sleep 0.2; done

# 1. The forward's port was made by REDIRECT.
ports=$(ctl ports acme)
grep -Eq 'udp +redirected +local 0\.0\.0\.0:5000 +owner forward' <<<"$ports" || fail "the forward's port is not redirected: $ports"
grep -q 'receives datagrams on 0.0.0.0:5000 by redirect' "$TEST_TMP/server.log" || fail "the server did not log the redirect"
before=$(field delivered)
out=$(lab exec lanhost python3 "$TEST_TMP/two.py" 192.168.77.2 5000 2>&1) || fail "udp: forward by redirect: $out"
assert_contains "$out" "each got its own answers"
after=$(field delivered)
((after - before >= 10)) || fail "the UDP channel delivered $((after - before)) datagrams to the server, not the 10 LAN datagrams"
assert_eq 0 "$(field tcpWhileUp)" "datagrams on TCP while the channel was up"
grep -q 'bytes from 203\.0\.113\.10:' "$TEST_TMP/echo_wan.log" || fail "the wan echo saw nothing from the server"
echo "udp: forward by redirect: $out; the channel delivered $((after - before))"

# 2. ctl redirect --to: port id and port printed, relayed the same way.
out=$(ctl redirect acme 5100 --to 203.0.113.10:6000) || fail "ctl redirect: $out"
[[ $out =~ ^port\ ([0-9]+)\ local\ 0\.0\.0\.0:5100$ ]] || fail "ctl redirect printed '$out'"
rid=${BASH_REMATCH[1]}
echo "ctl redirect: $out"
out=$(lab exec lanhost python3 "$TEST_TMP/two.py" 192.168.77.2 5100 2>&1) || fail "ctl redirect --to: $out"
assert_contains "$out" "each got its own answers"
# CLOSE ends it: the port is gone on the mediator, the server's sockets for it too.
ctl close acme "$rid" >/dev/null
sleep 0.3
if lab exec lan ss -Huln 'sport = :5100' | grep -q .; then fail "port 5100 still bound after close"; fi

# 3. ctl redirect without --to: datagrams show as events.
out=$(ctl redirect acme 5200) || fail "ctl redirect 5200: $out"
lab exec lanhost python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x" * 77, ("192.168.77.2", 5200))'
end=$((SECONDS + 5))
# The event stream never ends by itself: read it for a second at a time.
until events=$(timeout 1 "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl events --history 2>&1 || true) \
    && grep -q '"detail":"77 bytes from 192.168.77.10:[0-9]*","kind":"datagram"' <<<"$events"; do
    ((SECONDS < end)) || fail "no datagram event for the redirected port 5200: $(tail -3 <<<"$events")"
    sleep 0.2
done
echo "ctl redirect without --to: the datagram shows as an event"

# 4. Abuse: the port in use, first free instead, a protected address.
if out=$(ctl redirect acme 5000 2>&1); then fail "redirect of a port in use succeeded: $out"; fi
assert_contains "$out" "Address already in use" "redirect of a port in use"
free=$(ctl redirect acme 5000 --first-free) || fail "redirect --first-free: $free"
[[ $free =~ local\ 0\.0\.0\.0:50(0[1-9]|[1-9][0-9])$ ]] || fail "redirect --first-free printed '$free'"
if out=$(ctl redirect acme 127.0.0.1:5300 2>&1); then fail "redirect of loopback succeeded: $out"; fi
assert_contains "$out" "denied by policy" "redirect of loopback"
if bad=$(ctl redirect acme 5500 --to 'no-port-here' 2>&1); then fail "redirect --to without a port succeeded: $bad"; fi
assert_contains "$bad" "destination HOST:PORT is not valid"
if lab exec lan ss -Huln 'sport = :5500' | grep -q .; then fail "a refused redirect --to bound port 5500"; fi
echo "abuse: in use, first free ($free), loopback: $out; bad --to: $bad"

# 5. A flood of 400 LAN senders: the server holds at most --udp-max-flows (32) sockets for them.
lab exec lanhost python3 "$TEST_TMP/flood.py" 192.168.77.2 5000 400
# The flood crosses the tunnel after flood.py returns; the server logs the limit when it reaches it.
wait_log "$TEST_TMP/server.log" 'holds its limit of 32 UDP flows' 10
sleep 1 # the rest of the flood, which must not add sockets
flows=$(lab exec wan ss -Hun 'dport = :6000' | wc -l)
((flows <= 32)) || fail "the server holds $flows sockets for the forward's LAN senders (limit 32)"
echo "flood: 400 senders, the server holds $flows sockets"

# 6. A mediator without --allow-redirect refuses, and says so; with --allow-listen (how udp:NAME/
#    forwards were served before REDIRECT) the forward gets its port by OPEN and keeps working.
kill -TERM -- "-$(last_bg_pid)"
start_mediator mediator2 --allow-listen
wait_mediator acme 15
wait_log "$TEST_TMP/server.log" 'receives datagrams on 0.0.0.0:5000 by open \(the mediator refused redirect' 10
if out=$(ctl redirect acme 5400 2>&1); then fail "redirect without --allow-redirect succeeded: $out"; fi
assert_contains "$out" "does not allow redirect (--allow-redirect)"
grep -q 'redirect of 0.0.0.0:5000 denied by policy (--allow-redirect is off)' "$TEST_TMP/mediator2.log" \
    || fail "the mediator did not log the refused redirect"
grep -Eq 'udp +open +local 0\.0\.0\.0:5000 +owner forward' <<<"$(ctl ports acme)" || fail "the forward's port is not an opened one"
fwd=$(lab exec lanhost python3 "$TEST_TMP/two.py" 192.168.77.2 5000 2>&1) || fail "the forward by open: $fwd"
assert_contains "$fwd" "each got its own answers"
echo "without --allow-redirect: $out; with --allow-listen the forward works by open: $fwd"
echo "ok: $TEST_NAME"
