#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The remote socket API driven by hand with `postern ctl`: open (exact and
# first-free), listen + accepted events, ports, close, connect from an opened
# port, udp open, and the mediator's environment in `ctl mediators`.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# Ports 9100 and 9101 are taken on the mediator's host before anything starts.
bg lan busy1 socat TCP-LISTEN:9100,reuseaddr,fork EXEC:cat
bg lan busy2 socat TCP-LISTEN:9101,reuseaddr,fork EXEC:cat
wait_listen lan 9100
wait_listen lan 9101
# A LAN service for connect (an echo that stays open); its log says who connected.
# shellcheck disable=SC2016
bg lanhost svc socat -d -d TCP-LISTEN:7777,bind=192.168.77.10,reuseaddr,fork EXEC:cat
wait_listen lanhost 7777

start_server server --keepalive 1 --dead-timeout 3
start_mediator mediator --allow-listen
wait_mediator acme
bg wan events "$POSTERN_BIN" ctl events
sleep 0.5   # the event stream is subscribed

# --- open exact on a busy port
rc=0
err=$(ctl open acme tcp 0.0.0.0:9100 2>&1 >/dev/null) || rc=$?
echo "open busy: rc=$rc $err"
assert_eq 1 "$rc" "exit status of open on a busy port"
assert_contains "$err" "error: address in use" "open on a busy port"

# --- first free: 9100 and 9101 are busy, so 9102
out=$(ctl open acme tcp 0.0.0.0:9100 --first-free) || fail "open --first-free failed"
echo "first-free: $out"
[[ "$out" =~ ^port\ ([0-9]+)\ local\ 0\.0\.0\.0:9102$ ]] || fail "open --first-free: expected local 0.0.0.0:9102, got '$out'"
lport=${BASH_REMATCH[1]}
# The port is really taken in the kernel: nobody else can listen there now.
if lab exec lan python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0", 9102)); s.listen()' 2>/dev/null; then
    fail "port 9102 was bindable on the mediator host after open"
fi
# ...nor by a second OPEN, though the reserving socket has SO_REUSEADDR (which Linux lets two sockets
# share as long as neither listens); a first-free one from there takes the next port.
rc=0
err=$(ctl open acme tcp 0.0.0.0:9102 2>&1 >/dev/null) || rc=$?
assert_eq 1 "$rc" "exit status of a second open of an opened port"
assert_contains "$err" "error: address in use" "a second open of an opened port"
out=$(ctl open acme tcp 0.0.0.0:9102 --first-free) || fail "open --first-free from an opened port failed"
[[ "$out" =~ ^port\ ([0-9]+)\ local\ 0\.0\.0\.0:9103$ ]] || fail "open --first-free from 9102: expected local 0.0.0.0:9103, got '$out'"
ctl close acme "${BASH_REMATCH[1]}" >/dev/null || fail "close of the first-free port failed"

# --- listen, and a LAN host connects
out=$(ctl listen acme "$lport") || fail "listen failed"
assert_eq "port $lport local 0.0.0.0:9102" "$out" "listen answer"
wait_listen lan 9102
lab exec lanhost python3 -c '
import socket
c = socket.create_connection(("192.168.77.2", 9102), timeout=5)
c.sendall(b"hello from lanhost\n")
c.close()'
# (JSON lines, keys sorted: detail, kind, mediator, port, time)
wait_log "$TEST_TMP/events.log" "^\\{\"detail\":\"on port $lport from 192\\.168\\.77\\.10:[0-9]+\",\"kind\":\"accepted\",\"mediator\":\"acme\",\"port\":[0-9]+," 5
accepted_id=$(grep '"kind":"accepted"' "$TEST_TMP/events.log" | head -1 | sed -n 's/.*"port":\([0-9]*\).*/\1/p')
echo "accepted as port $accepted_id"
# Every line of the stream is one JSON object (no HTTP framing leaks through).
if grep -v '^{.*}$' "$TEST_TMP/events.log"; then fail "ctl events printed lines that are not JSON events"; fi

# --- connect an opened port to a LAN service
out=$(ctl open acme tcp 0.0.0.0:0) || fail "open tcp port 0 failed"
[[ "$out" =~ ^port\ ([0-9]+)\ local\ 0\.0\.0\.0:([0-9]+)$ ]] || fail "open port 0: unexpected '$out'"
cport=${BASH_REMATCH[1]} csrc=${BASH_REMATCH[2]}
((csrc > 0)) || fail "open port 0 did not report the assigned port"
out=$(ctl connect acme "$cport" 192.168.77.10:7777) || fail "connect of port $cport failed"
echo "connect: $out"
assert_eq "port $cport local 192.168.77.2:$csrc" "$out" "connect keeps the opened port"
wait_log "$TEST_TMP/svc.log" "accepting connection from AF=2 192\\.168\\.77\\.2:$csrc" 5

# --- udp open
out=$(ctl open acme udp 0.0.0.0:5300) || fail "open udp failed"
[[ "$out" =~ ^port\ ([0-9]+)\ local\ 0\.0\.0\.0:5300$ ]] || fail "open udp: unexpected '$out'"
uport=${BASH_REMATCH[1]}
wait_listen lan 5300 udp

# --- ports lists them
ports=$(ctl ports acme)
echo "$ports"
grep -Eq "^$lport  tcp  listening  local 0\.0\.0\.0:9102 " <<<"$ports" || fail "listening port missing from ctl ports"
grep -Eq "^$cport  tcp  connected  local 192\.168\.77\.2:$csrc  remote 192\.168\.77\.10:7777 " <<<"$ports" || fail "connected port missing from ctl ports"
grep -Eq "^$uport  udp  open  local 0\.0\.0\.0:5300 " <<<"$ports" || fail "udp port missing from ctl ports"

# --- close: the listener goes away on the mediator host, and from ctl ports
out=$(ctl close acme "$lport") || fail "close failed"
assert_eq "port $lport local 0.0.0.0:9102" "$out" "close answer"
end=$((SECONDS + 5))
while lab exec lan ss -Htln "sport = :9102" | grep -q .; do
    ((SECONDS < end)) || fail "port 9102 still listening after close"
    sleep 0.1
done
if lab exec lanhost python3 -c 'import socket; socket.create_connection(("192.168.77.2", 9102), timeout=3)' 2>/dev/null; then
    fail "connect to 192.168.77.2:9102 still works after close"
fi
if ctl ports acme | grep -Eq "^$lport "; then fail "closed port $lport still listed"; fi
ctl close acme "$uport" >/dev/null || fail "close udp failed"
rc=0
err=$(ctl close acme "$uport" 2>&1 >/dev/null) || rc=$?
assert_eq 1 "$rc" "exit status of closing a closed port"
assert_contains "$err" "no such port"

# --- the mediator's environment
meds=$(ctl mediators)
echo "$meds"
mac=$(lab exec lan cat /sys/class/net/eth0/address)
grep -Eq '^acme  session [0-9]+  from 203\.0\.113\.1:' <<<"$meds" || fail "acme not listed (from the gateway's address)"
grep -Eq "^  eth0  mac $mac  mtu 1500  up  .*192\.168\.77\.2/24" <<<"$meds" || fail "eth0 with MAC $mac, MTU 1500, 192.168.77.2/24 not listed"
grep -Eq '^  route 0\.0\.0\.0/0 via 192\.168\.77\.1 dev eth0$' <<<"$meds" || fail "default route via 192.168.77.1 not listed"
echo "ok: $TEST_NAME"
