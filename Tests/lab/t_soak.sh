#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Repeated use leaves nothing behind (the soak audit; README "Bounds"):
#  a) 300 TLS handshakes to the service port that end before HELLO (a scan): the server's memory
#     comes back within SLACK_MIB of what it was (each kept ~60 KiB before: TunnelSession held its
#     ChannelHandlerContext, a MediatorLink its onEstablished handler; 300 = ~18 MiB);
#  b) the mediator killed (SIGKILL) and restarted 8 times: the server's descriptors are back to their
#     count, one session listed, the forward serves after each;
#  c) 400 short connections through a tcp: forward (echo, RST by the user, half-close, a user that
#     never reads, RST by the LAN server, closed at once): both processes' descriptors back, and no
#     socket left in CLOSE_WAIT, FIN_WAIT, LAST_ACK or CLOSING in wan or lan;
#  d) ctl open/listen/close and connect/close 20 times each, 10 reloads adding and removing forwards
#     and a SOCKS5 listener: descriptors and listening sockets back.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup
SLACK_MIB=8
FD_SLACK=2

bg lanhost lan python3 -c '
import socket, struct, threading
def serve(c):
    try:
        m = c.recv(1)
        if m == b"e":
            while True:
                d = c.recv(65536)
                if not d: break
                c.sendall(d)
        elif m == b"h":
            while c.recv(65536): pass
            c.sendall(b"bye")
        elif m == b"b":
            while True: c.sendall(b"x" * 65536)
        elif m == b"R":
            c.recv(100); c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError: pass
    finally: c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.77.10", 9000)); s.listen(1024); print("listening", flush=True)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
'
wait_log "$TEST_TMP/lan.log" '^listening'
forwards() {
    printf '[server]\nforwards = [\n  "tcp:0.0.0.0:8080=acme/192.168.77.10:9000",\n  "tcp:acme/0.0.0.0:9001=203.0.113.10:2222",\n'
    (($1)) && printf '  "tcp:0.0.0.0:8090=acme/192.168.77.10:9000", "udp:acme/0.0.0.0:5002=203.0.113.10:5001",\n'
    printf ']\nsocks = ["127.0.0.1:1080=acme"%s]\n' "$( (($1)) && echo ', "127.0.0.1:1081=acme"')"
}
forwards 0 >"$TEST_TMP/server.toml"
start_server server --config "$TEST_TMP/server.toml" --keepalive 1 --dead-timeout 3 --name-probe-timeout 1
server=$(pgrep -g "$(last_bg_pid)" -f -- "^$POSTERN_BIN server ")
start_mediator mediator --allow-listen --allow-redirect
wait_mediator acme
mediator() { pgrep -g "$(last_bg_pid)" -f -- "^$POSTERN_BIN mediator "; }
med=$(mediator)

fds() { ls "/proc/$1/fd" | wc -l; }
rss() { awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$1/status"; }
forward_ok() { [[ "$(printf 'eping\n' | lab exec user timeout 5 socat -T2 - TCP:203.0.113.10:8080,connect-timeout=2 2>/dev/null)" == ping ]]; }
# back WHAT PID COUNT: the process's descriptors come back within FD_SLACK of COUNT within 10 s.
back() {
    local end=$((SECONDS + 10)) n
    until n=$(fds "$2"); ((n <= $3 + FD_SLACK)); do
        ((SECONDS < end)) || fail "$1: $n descriptors 10 s after, $3 before"
        sleep 0.2
    done
    echo "$1: $n descriptors (before: $3)"
}
handshakes() {
    lab exec user python3 -c '
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ok = 0
for i in range(int(sys.argv[1])):
    s = socket.create_connection(("203.0.113.10", 7000), timeout=5)
    try:
        t = ctx.wrap_socket(s); ok += 1; t.close()
    except OSError: s.close()
print(ok, "handshakes")' "$1"
}
forward_ok || fail "the forward does not serve at the start"

# a) handshakes that go no further; the first 100 warm up what is made once (event history, caches).
handshakes 100 >/dev/null
sleep 2
base=$(rss "$server")
handshakes 300
end=$((SECONDS + 15))
until r=$(rss "$server"); ((r <= base + SLACK_MIB)); do
    ((SECONDS < end)) || fail "a) server RSS $r MiB 15 s after 300 handshakes, $base MiB before (bound +$SLACK_MIB)"
    sleep 0.5
done
echo "a) server RSS $r MiB after 300 handshakes that ended before HELLO (before: $base MiB)"

# b) mediator killed and restarted.
server_fds=$(fds "$server")
for i in $(seq 8); do
    kill -KILL "$med"
    start_mediator "mediator$i" --allow-listen --allow-redirect
    end=$((SECONDS + 15))
    until forward_ok && [[ "$(ctl mediators | grep -c '^acme ')" == 1 ]] && med2=$(mediator) && [[ "$med2" != "$med" ]]; do
        ((SECONDS < end)) || fail "b) the forward does not serve 15 s after restart $i"
        sleep 0.2
    done
    med=$med2
done
back "b) server after 8 mediator restarts" "$server" "$server_fds"

# c) 400 short connections of every ending.
server_fds=$(fds "$server") med_fds=$(fds "$med")
lab exec user python3 - <<'PY'
import socket, struct, threading, time
modes = ["e", "r", "h", "b", "R", "x"]
bad = []
def one(i):
    m = modes[i % len(modes)]
    c = socket.create_connection(("203.0.113.10", 8080), timeout=5)
    try:
        if m in "er":
            c.sendall(b"e" + b"a" * 100); got = b""
            while len(got) < 100: got += c.recv(100)
            if m == "r": c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif m == "h":
            c.sendall(b"hq"); c.shutdown(socket.SHUT_WR); got = b""
            while True:
                d = c.recv(100)
                if not d: break
                got += d
            if got != b"bye": bad.append((m, got))
        elif m == "b":
            c.sendall(b"b"); time.sleep(0.2)
        elif m == "R":
            c.sendall(b"Rz")
            try: c.recv(100)
            except ConnectionResetError: pass
    except Exception as e: bad.append((m, repr(e)))
    c.close()
def worker(k):
    for i in range(k, 400, 8): one(i)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print("400 connections,", len(bad), "bad", bad[:3])
assert not bad
PY
back "c) server after 400 connections" "$server" "$server_fds"
back "c) mediator after 400 connections" "$med" "$med_fds"
end=$((SECONDS + 10))
until left=$(for n in wan lan; do lab exec "$n" ss -Htan state close-wait state fin-wait-1 state fin-wait-2 state last-ack state closing; done); [[ -z "$left" ]]; do
    ((SECONDS < end)) || fail "c) sockets still closing 10 s after: $left"
    sleep 0.2
done

# d) the remote socket API by hand, and reloads.
server_fds=$(fds "$server") med_fds=$(fds "$med")
listening() { echo "$(lab exec wan ss -Htuln | wc -l)/$(lab exec lan ss -Htuln | wc -l)"; }
before=$(listening)
id() { awk '/^port/ { print $2; exit }'; }
for i in $(seq 20); do
    p=$(ctl open acme tcp 0 | id) && ctl listen acme "$p" >/dev/null && ctl close acme "$p" >/dev/null || fail "d) open/listen/close $i"
    p=$(ctl connect acme 0 192.168.77.10:9000 | id) && ctl close acme "$p" >/dev/null || fail "d) connect/close $i"
done
for i in $(seq 10); do
    forwards $((i % 2)) >"$TEST_TMP/server.toml"
    ctl reload >/dev/null || fail "d) reload $i refused"
done
forward_ok || fail "d) the forward does not serve after the reloads"
back "d) server after 40 ctl operations and 10 reloads" "$server" "$server_fds"
back "d) mediator after 40 ctl operations and 10 reloads" "$med" "$med_fds"
assert_eq "$before" "$(listening)" "d) listening sockets (wan/lan) after the reloads"
echo "ok: $TEST_NAME"
