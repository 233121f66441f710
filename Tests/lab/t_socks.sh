#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# SOCKS5 into the mediator's network, from `user` through the real NAT:
#  - CONNECT by a name only the LAN's DNS knows (dnsmasq in lanhost; the mediator in lan resolves
#    with it through /etc/netns/<lan>/resolv.conf): curl --socks5-hostname fetches 20 MiB, SHA-256
#    checked; by IPv4 (curl --socks5) and IPv6 literal; ssh logs into an sshd in lanhost through a
#    ProxyCommand;
#  - BIND: a LAN host connects back (a stranger on the LAN is turned away first);
#  - UDP ASSOCIATE: 1,000 DNS queries to the LAN's dnsmasq, none corrupted; a fragment is dropped;
#  - the RFC's reply codes: denied by the mediator's --allow (2, logged on both ends), refused (5),
#    unresolvable (4), unknown command (7) and address type (8); wrong passwords refused; malformed
#    greetings closed; a stalled handshake closed after the timeout; a flood of idle handshakes bounded;
#  - no-auth on a non-loopback listener refused at start; nothing left on the mediator afterwards.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

LAN_NS="${POSTERN_LAB_PREFIX}lan"
RESOLV_DIR="/etc/netns/$LAN_NS"
# Cleanup of what this test puts outside the lab's namespaces: the lan namespace's resolv.conf.
# lib.sh's EXIT trap still runs after ours (processes, namespaces, TEST_TMP).
_socks_cleanup() {
    local rc=$?
    set +e
    rm -f "$RESOLV_DIR/resolv.conf"
    rmdir "$RESOLV_DIR" 2>/dev/null || true
    (exit "$rc")
    _lab_cleanup
}
trap _socks_cleanup EXIT

CLIENT="$LAB_REPO/Tests/lab/socks5_client.py"
socks() { lab exec user env SOCKS_PROXY=203.0.113.10:1080 SOCKS_USER=alice SOCKS_PASS="$ALICE_PASS" python3 "$CLIENT" "$@"; }

# --- the LAN: DNS, a web server with a 20 MiB file, sshd, an IPv6 echo
bg lanhost dns dnsmasq --keep-in-foreground --user=root --conf-file=/dev/null --no-resolv --no-hosts \
    --listen-address=192.168.77.10 --listen-address=fd00:77::10 --bind-interfaces --address=/files.lan/192.168.77.10 \
    --pid-file="$TEST_TMP/dnsmasq.pid" --log-facility=-
mkdir -p "$RESOLV_DIR" "$TEST_TMP/www"
echo "nameserver 192.168.77.10" >"$RESOLV_DIR/resolv.conf"
head -c $((20 << 20)) /dev/urandom >"$TEST_TMP/www/big.bin"
want_sha=$(sha256sum "$TEST_TMP/www/big.bin" | cut -d' ' -f1)
bg lanhost www python3 -m http.server 8080 --bind 192.168.77.10 --directory "$TEST_TMP/www"
bg lanhost echo6 socat TCP6-LISTEN:7777,bind=[fd00:77::10],fork,reuseaddr SYSTEM:'read l; echo "v6 echo: $l"'

# sshd's privilege separation directory. Left in place, as tools/bench does: another lab's sshd
# may be using it at the same moment.
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$TEST_TMP/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$TEST_TMP/userkey"
cp "$TEST_TMP/userkey.pub" "$TEST_TMP/authorized_keys"
cat >"$TEST_TMP/sshd_config" <<CFG
ListenAddress 192.168.77.10:2222
HostKey $TEST_TMP/hostkey
AuthorizedKeysFile $TEST_TMP/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile none
CFG
bg lanhost sshd /usr/sbin/sshd -D -e -f "$TEST_TMP/sshd_config"

wait_listen lanhost 53 udp
wait_listen lanhost 8080 tcp
wait_listen lanhost 2222 tcp
wait_listen lanhost 7777 tcp
lab exec lan getent hosts files.lan | grep -q 192.168.77.10 || fail "lan does not resolve files.lan through the LAN's DNS"
if lab exec user getent hosts files.lan >/dev/null; then fail "user resolves files.lan: the test would prove nothing"; fi

# --- accounts; no-auth on a non-loopback listener is refused at start
ALICE_PASS="pw-$RANDOM-$RANDOM"
(umask 077; printf '# SOCKS accounts\nalice %s\nbob bobs-password\n' "$ALICE_PASS" >"$TEST_TMP/users")
expect_exit "no-auth on 0.0.0.0" 2 noauth 'without --socks-users' \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" server --listen 127.0.0.1:7001 --admin off --secret-file "$TEST_TMP/secret" \
    --socks 0.0.0.0:1081=acme
printf '[server]\nlisten = "127.0.0.1:7001"\nadmin = "off"\nsocks = ["0.0.0.0:1081=acme"]\n' >"$TEST_TMP/noauth.toml"
expect_exit "no-auth on 0.0.0.0 from the config file" 2 noauthcfg 'without --socks-users' \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" server --config "$TEST_TMP/noauth.toml" --secret-file "$TEST_TMP/secret"
chmod 0666 "$TEST_TMP/users"
expect_exit "world-writable users file" 2 badmode 'writable by everyone' \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" server --listen 127.0.0.1:7001 --admin off --secret-file "$TEST_TMP/secret" \
    --socks 0.0.0.0:1081=acme --socks-users "$TEST_TMP/users"
chmod 0600 "$TEST_TMP/users"

start_server server --socks 0.0.0.0:1080=acme --socks '[::]:1082=acme' --socks-users "$TEST_TMP/users"
wait_listen wan 1080 tcp
wait_listen wan 1082 tcp
start_mediator mediator --allow 192.168.77.10:8080,2222,53,7 --allow '[fd00:77::/64]:7777,53' --allow-listen
MEDIATOR_PID=$(last_bg_pid)
wait_mediator acme

# --- CONNECT by a LAN name: 20 MiB, SHA-256 checked
got_sha=$(lab exec user curl -sS --fail --max-time 120 --socks5-hostname 203.0.113.10:1080 --proxy-user "alice:$ALICE_PASS" \
    http://files.lan:8080/big.bin | sha256sum | cut -d' ' -f1)
assert_eq "$want_sha" "$got_sha" "20 MiB through CONNECT to files.lan"
echo "curl --socks5-hostname: 20 MiB from files.lan, SHA-256 matches"
grep -q '"GET /big.bin' "$TEST_TMP/www.log" || fail "the web server saw no request"
# by IPv4 address (ATYP 1)
out=$(lab exec user curl -sS --fail --max-time 30 -x "socks5://alice:$ALICE_PASS@203.0.113.10:1080" \
    -o /dev/null -w '%{http_code} %{size_download}' http://192.168.77.10:8080/big.bin)
assert_eq "200 $((20 << 20))" "$out" "curl --socks5 to 192.168.77.10"
# by IPv6 literal (ATYP 4)
out=$(socks connect fd00:77::10 7777 ping6)
assert_contains "$out" "reply 0"
assert_contains "$out" "v6 echo: ping6"
echo "CONNECT to [fd00:77::10]:7777: $(tail -1 <<<"$out")"

# --- ssh into the LAN through a ProxyCommand
out=$(lab exec user env SOCKS_PROXY=203.0.113.10:1080 SOCKS_USER=alice SOCKS_PASS="$ALICE_PASS" \
    ssh -i "$TEST_TMP/userkey" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    -o ConnectTimeout=20 -o "ProxyCommand=python3 $CLIENT pipe %h %p" -p 2222 root@192.168.77.10 \
    'echo "ssh ok on $(hostname -I | cut -d" " -f1)"' 2>"$TEST_TMP/ssh.err") || fail "ssh through SOCKS: $(cat "$TEST_TMP/ssh.err")"
assert_contains "$out" "ssh ok on 192.168.77.10"
echo "ssh -o ProxyCommand through SOCKS5: $out"

# --- reply codes
out=$(socks connect 192.168.77.10 9999)
assert_contains "$out" "reply 2"
wait_log "$TEST_TMP/mediator.log" 'connect to 192\.168\.77\.10:9999 denied by policy'
wait_log "$TEST_TMP/server.log" 'CONNECT 192\.168\.77\.10:9999 .*refused \(reply 2'
echo "denied destination: reply 2, logged on both ends"
out=$(socks connect 192.168.77.10 7)
assert_contains "$out" "reply 5"
out=$(socks connect nosuch.lan 8080)
assert_contains "$out" "reply 4"
echo "refused: reply 5; unresolvable name: reply 4"

# --- wrong passwords, other methods
rc=0; out=$(lab exec user env SOCKS_PROXY=203.0.113.10:1080 SOCKS_USER=alice SOCKS_PASS=wrong python3 "$CLIENT" connect 192.168.77.10 8080) || rc=$?
assert_eq 3 "$rc" "wrong password: client exit"
assert_contains "$out" "authentication refused: 0101"
rc=0; out=$(lab exec user env SOCKS_PROXY=203.0.113.10:1080 SOCKS_USER=mallory SOCKS_PASS="$ALICE_PASS" python3 "$CLIENT" connect 192.168.77.10 8080) || rc=$?
assert_eq 3 "$rc" "unknown user: client exit"
rc=0; out=$(lab exec user env SOCKS_PROXY=203.0.113.10:1080 SOCKS_USER=alice@elsewhere SOCKS_PASS="$ALICE_PASS" python3 "$CLIENT" connect 192.168.77.10 8080) || rc=$?
assert_eq 3 "$rc" "a mediator alice may not choose: client exit"
if lab exec user curl -sS --max-time 10 --socks5-hostname 203.0.113.10:1080 http://files.lan:8080/ -o /dev/null 2>"$TEST_TMP/curl.err"; then
    fail "curl without credentials got through"
fi
echo "wrong password, unknown user, forbidden mediator, no credentials: refused"

# --- malformed input: each gets its reply or a close
raw() { lab exec user env SOCKS_PROXY=203.0.113.10:1080 python3 "$CLIENT" raw "$1"; }
# RFC 1929 ULEN UNAME PLEN PASSWD for alice, in hex.
auth_hex=$(python3 -c 'import sys; u, p = (a.encode() for a in sys.argv[1:]); print((bytes([len(u)]) + u + bytes([len(p)]) + p).hex())' alice "$ALICE_PASS")
assert_eq "- closed" "$(raw 04010050c0a84d0a00)" "SOCKS4 request"
assert_eq "- closed" "$(raw 474554202f20485454502f312e310d0a0d0a)" "an HTTP request"
assert_eq "05ff closed" "$(raw 050100)" "only no-auth offered"
assert_eq "05ff closed" "$(raw 0500)" "no methods"
assert_eq "05020101 closed" "$(raw 05010201000100)" "empty username"
# After a good login (05 02, 01 00): a reply with REP and BND 0.0.0.0:0, then the close.
after_login() { printf '0502010005%02x0001000000000000' "$1"; }
assert_eq "$(after_login 7) closed" "$(raw "05010201${auth_hex}0509000100000000")" "unknown command"
assert_eq "$(after_login 8) closed" "$(raw "05010201${auth_hex}05010002c0a84d0a0050")" "unknown address type"
assert_eq "$(after_login 1) closed" "$(raw "05010201${auth_hex}05010003000050")" "empty name"
echo "malformed greetings and requests: replies 0xff, 1, 7, 8 or a close"

# --- BIND: the LAN host connects back; a stranger on the LAN is turned away first
bg user bind env SOCKS_PROXY=203.0.113.10:1080 SOCKS_USER=alice SOCKS_PASS="$ALICE_PASS" python3 "$CLIENT" bind 192.168.77.10 "$TEST_TMP/bound"
end=$((SECONDS + 15))
until [[ -s "$TEST_TMP/bound" ]]; do ((SECONDS < end)) || fail "BIND gave no first reply: $(cat "$TEST_TMP/bind.log")"; sleep 0.1; done
read -r bhost bport <"$TEST_TMP/bound"
assert_eq 192.168.77.2 "$bhost" "BIND listens on the mediator's LAN address"
cat >"$TEST_TMP/peer.py" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(sys.argv[3].encode() + b"\n")
try:
    print(s.recv(100).decode().strip() or "closed")
except ConnectionResetError:
    print("reset")
PY
stranger=$(lab exec lan python3 "$TEST_TMP/peer.py" "$bhost" "$bport" "hello from a stranger" 2>&1 || true)
[[ "$stranger" =~ reset|closed ]] || fail "a stranger connecting to the BIND port got: $stranger"
wait_log "$TEST_TMP/server.log" 'BIND: connection from 192\.168\.77\.2:[0-9]+ refused'
peer=$(lab exec lanhost python3 "$TEST_TMP/peer.py" "$bhost" "$bport" "hello from lanhost")
assert_eq "hello from user" "$peer" "the BIND peer's answer"
wait_log "$TEST_TMP/bind.log" 'peer says: hello from lanhost'
assert_contains "$(cat "$TEST_TMP/bind.log")" "second reply 0 192.168.77.10:"
echo "BIND: first reply $bhost:$bport, stranger reset, lanhost relayed both ways"

# --- UDP ASSOCIATE: 1,000 DNS queries to the LAN's dnsmasq
out=$(socks udp 1000)
echo "$out"
assert_contains "$out" "udp: 1000 ok, 0 corrupted, 0 lost; fragment dropped"
# To an IPv6 destination: the mediator's IPv6 port opens with the first (which waits for it;
# t_packet_audit.sh checks that it is answered without a retry).
out=$(socks udp 50 fd00:77::10)
echo "IPv6 $out"
assert_contains "$out" "udp: 50 ok, 0 corrupted, 0 lost; fragment dropped"
# A dual-stack [::] listener: an IPv4 client gets an IPv4 relay address, an IPv6 client an IPv6 one.
for proxy in 203.0.113.10:1082 2001:db8:113::10:1082; do
    out=$(lab exec user env SOCKS_PROXY=$proxy SOCKS_USER=alice SOCKS_PASS="$ALICE_PASS" python3 "$CLIENT" udp 20)
    assert_contains "$out" "udp: 20 ok, 0 corrupted, 0 lost"
    echo "through the [::] listener from $proxy: $out"
done
out=$(socks udp-denied 192.168.77.10 5353)
assert_eq "no answer" "$out" "a datagram to a denied destination"
wait_log "$TEST_TMP/mediator.log" 'datagram to 192\.168\.77\.10:5353 denied by policy'
echo "UDP: a denied destination gets nothing, and the mediator logs it"

# --- stalls and floods
start=$SECONDS
assert_eq "- closed" "$(raw 05)" "a greeting that stops after one byte"
stalled=$((SECONDS - start))
((stalled >= 9 && stalled <= 14)) || fail "a stalled handshake was closed after ${stalled}s (want ~10 s)"
echo "a stalled handshake is closed after ${stalled}s"
cat >"$TEST_TMP/flood.py" <<'PY'
import socket, time
held, closed = [], 0
for i in range(400):
    s = socket.create_connection(("203.0.113.10", 1080), timeout=5)
    held.append(s)
time.sleep(1)
for s in held:
    s.settimeout(0.01)
    try:
        if s.recv(1) == b"":
            closed += 1
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed += 1
print(f"closed {closed} of 400")
time.sleep(12)
PY
bg user flood python3 "$TEST_TMP/flood.py"
wait_log "$TEST_TMP/flood.log" '^closed' 20
closed=$(sed -n 's/^closed \([0-9]*\) of 400$/\1/p' "$TEST_TMP/flood.log")
((closed >= 100)) || fail "400 idle handshakes: only $closed were closed (the bound is 256)"
wait_log "$TEST_TMP/server.log" 'connections are in their handshake; closing new ones'
echo "400 idle handshakes at once: $closed closed at accept"
# The flood's held connections time out within the handshake timeout; then service is back.
sleep 11
out=$(socks connect fd00:77::10 7777 after-flood)
assert_contains "$out" "v6 echo: after-flood"

# --- nothing left on the mediator: every association, BIND and refused request closed its ports
no_ports_left() {
    local end=$((SECONDS + 10))
    until [[ "$(ctl ports acme)" == "no ports" ]]; do
        ((SECONDS < end)) || fail "ports left on the mediator: $(ctl ports acme)"
        sleep 0.2
    done
}
no_ports_left
echo "no mediator ports left"

# --- BIND where the mediator does not allow listening: reply 2, logged on both ends
kill -TERM -- "-$MEDIATOR_PID"
end=$((SECONDS + 10))
while ctl mediators --json 2>/dev/null | grep -q '"name" : "acme"'; do
    ((SECONDS < end)) || fail "the first mediator did not go away"
    sleep 0.1
done
start_mediator mediator2 --allow 192.168.77.10:8080
wait_mediator acme
out=$(socks bind 192.168.77.10 "$TEST_TMP/bound2")
assert_contains "$out" "first reply 2 "
wait_log "$TEST_TMP/mediator2.log" 'listen on port [0-9]+ denied by policy \(--allow-listen is off\)'
wait_log "$TEST_TMP/server.log" 'BIND for 192\.168\.77\.10:0 through .acme. refused \(reply 2'
echo "BIND without --allow-listen: reply 2, logged on both ends"

# The refused LISTEN left no opened port behind.
no_ports_left
echo "no mediator ports left after the refused BIND"
echo "ok: $TEST_NAME"
