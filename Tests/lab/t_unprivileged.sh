#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Server and mediator run as an ordinary user (nobody), as an operator would run them: the service
# port and the forwards on unprivileged ports, no capabilities. A tcp: forward carries a 4 MB
# download and a TCP half-close exchange, a udp: forward carries datagrams, and `ctl connect` opens a
# LAN connection. Before this test, every relayed socket asked for SO_DEBUG (a socket-level option
# given where TCP_NODELAY was meant), which the kernel refuses without CAP_NET_ADMIN: the mediator
# could not even reach the server.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# nobody needs to read and run the binary and own its secrets and state: a folder of its own in /tmp
# (the runner's folders above TEST_TMP are private to root), removed at the end; lib.sh's EXIT trap
# still runs after ours (processes, namespaces, TEST_TMP).
NOBODY_DIR=$(mktemp -d /tmp/postern-nobody.XXXXXX)
_unprivileged_cleanup() {
    local rc=$?
    set +e
    rm -rf "$NOBODY_DIR"
    (exit "$rc")
    _lab_cleanup
}
trap _unprivileged_cleanup EXIT
chmod 755 "$NOBODY_DIR"
install -m 755 "$POSTERN_BIN" "$NOBODY_DIR/postern"
for who in srv med; do
    install -d -o nobody -m 700 "$NOBODY_DIR/state-$who"
    install -o nobody -m 600 "$TEST_TMP/secret" "$NOBODY_DIR/secret-$who"
done

mkdir -p "$TEST_TMP/www"
head -c $((4 << 20)) /dev/urandom >"$TEST_TMP/www/big.bin"
chmod -R a+rX "$TEST_TMP/www"
want=$(sha256sum <"$TEST_TMP/www/big.bin" | cut -d' ' -f1)
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_listen lanhost 80
bg lanhost udpecho python3 "$LAB_REPO/Tests/lab/udp_echo.py" 192.168.77.10 5353
wait_listen lanhost 5353 udp
# Reads until the client's FIN, then answers: only works if the half-close crosses the tunnel.
bg lanhost halfclose socat TCP-LISTEN:7100,bind=192.168.77.10,reuseaddr,fork SYSTEM:'wc -c'
wait_listen lanhost 7100

bg wan server runuser -u nobody -- env POSTERN_STATE_DIR="$NOBODY_DIR/state-srv" "$NOBODY_DIR/postern" server \
    --listen 0.0.0.0:7000 --secret-file "$NOBODY_DIR/secret-srv" \
    --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80 \
    --forward tcp:0.0.0.0:8100=acme/192.168.77.10:7100 \
    --forward udp:0.0.0.0:8053=acme/192.168.77.10:5353
wait_listen wan 7000 tcp
wait_listen wan 7070 tcp
pgrep -u nobody -f "$NOBODY_DIR/postern server" >/dev/null || fail "the server does not run as nobody"
fp=$(runuser -u nobody -- env POSTERN_STATE_DIR="$NOBODY_DIR/state-srv" "$NOBODY_DIR/postern" fingerprint 2>/dev/null)
bg lan mediator runuser -u nobody -- env POSTERN_STATE_DIR="$NOBODY_DIR/state-med" "$NOBODY_DIR/postern" mediator \
    --server 203.0.113.10:7000 --name acme --secret-file "$NOBODY_DIR/secret-med" --server-fingerprint "$fp"
export POSTERN_STATE_DIR="$NOBODY_DIR/state-srv"   # ctl (root) reads the server's admin token there
wait_mediator acme 15
pgrep -u nobody -f "$NOBODY_DIR/postern mediator" >/dev/null || fail "the mediator does not run as nobody"

lab exec user curl -sS --fail --max-time 30 -o "$TEST_TMP/got" http://203.0.113.10:8080/big.bin \
    || fail "download through the forward failed"
assert_eq "$want" "$(sha256sum <"$TEST_TMP/got" | cut -d' ' -f1)" "SHA-256 through the forward"

got=$(head -c 12345 /dev/zero | lab exec user timeout 10 socat -t 5 - TCP:203.0.113.10:8100) \
    || fail "half-close exchange failed"
assert_eq 12345 "$(echo "$got" | tr -d ' ')" "bytes the LAN service counted before answering"

got=$(lab exec user python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
n = 0
for i in range(20):
    s.sendto(b"ping %d" % i, ("203.0.113.10", 8053))
    try:
        if s.recvfrom(2048)[0] == b"ping %d" % i: n += 1
    except socket.timeout:
        pass
print(n)')
((got >= 18)) || fail "udp forward: only $got of 20 echoes came back"
echo "udp forward: $got of 20 echoes"

out=$(ctl connect acme 0 192.168.77.10:80 2>&1) || fail "ctl connect failed: $out"
assert_contains "$out" "local 192.168.77.2:" "ctl connect (port and its local address on the mediator)"

for log in server mediator; do
    if grep -Eq "Permission denied|errno: 13" "$TEST_TMP/$log.log"; then
        fail "$log logged a permission error: $(grep -E "Permission denied|errno: 13" "$TEST_TMP/$log.log" | head -2)"
    fi
done
echo "ok: $TEST_NAME"
