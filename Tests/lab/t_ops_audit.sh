#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A stranger's operations audit (defects found from outside, each checked here):
#  h) a flood of datagrams to a destination the mediator's policy denies is logged at the 1st, 10th,
#     100th… (a line each before);
#  i) SIGHUP sent to the mediator is logged and survived (the server's reload signal killed it);
#  a) a config file with a duplicate key is refused with the parser's reason, not only a line number;
#  b) a refused reload's reason reaches `ctl reload` whole (it was cut at 256 characters), ctl exits 1,
#     and a connection relayed by a forward the reload does not touch survives it (and good reloads);
#  c) a reload that changes a setting only a restart applies says so (ctl and the log), instead of
#     answering "unchanged" as if the new keepalive were in force;
#  d) a forward naming a mediator the per-mediator secret file has no secret for is warned about;
#  e) `ctl events | head -1` ends once head has gone and the next event comes (NIO ignores SIGPIPE:
#     ctl followed the stream for nobody);
#  e2) a forward's connections (opened, closed with their bytes) and UDP flows are streamed to `ctl events`;
#  f) `ctl forwards add` without its FORWARD prints the usage of `ctl forwards`, not `postern
#     <subcommand>`; an unreadable --token-file is exit 1 without usage text;
#  g) a mediator that refuses the server's key (a wrong pin) is not a failed proof: retried through
#     the same NAT address as the real mediator, it does not close that address (README: wrong
#     secrets and names are throttled), and the real mediator reconnects meanwhile.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

secret=$(cat "$TEST_TMP/secret")
write_secret "$TEST_TMP/named.secret" "acme $secret"
cat >"$TEST_TMP/server.toml" <<EOF
[server]
listen = "0.0.0.0:7000"
secret-file = "$TEST_TMP/named.secret"
keepalive = 2
dead-timeout = 6
forwards = [
    "tcp:0.0.0.0:8081=acme/192.168.77.10:7777",
    "tcp:0.0.0.0:8082=nosuch/192.168.77.10:7777",
    "udp:0.0.0.0:5353=acme/192.168.77.10:53",
]
EOF

# a) a duplicate key: the reason, with the place.
printf '[server]\nlisten = "0.0.0.0:7100"\nkeepalive = 3\nkeepalive = 4\n' >"$TEST_TMP/dup.toml"
expect_exit "a duplicate key" 2 dup "dup.toml is not valid TOML \(line 4, column [0-9]+\): .*keepalive" \
    "$LAB_TOOL" exec user "$POSTERN_BIN" server --config "$TEST_TMP/dup.toml"

bg lanhost echo socat TCP-LISTEN:7777,bind=192.168.77.10,reuseaddr,fork EXEC:cat
wait_listen lanhost 7777
bg wan server "$POSTERN_BIN" server --config "$TEST_TMP/server.toml"
wait_listen wan 7000
wait_listen wan 7070
wait_listen wan 8081
start_mediator mediator --allow 192.168.77.10:7777
mediator=$(last_bg_pid)
wait_mediator acme

# d) the forward for 'nosuch', which cannot connect with these secrets.
wait_log "$TEST_TMP/server.log" "forward tcp:0.0.0.0:8082=nosuch/192.168.77.10:7777 names mediator 'nosuch', which has no secret" 5
if grep -q "mediator 'acme', which has no secret" "$TEST_TMP/server.log"; then fail "warned about acme, which has a secret"; fi
echo "unknown mediator warned about: $(grep -o "names mediator 'nosuch'[^:]*" "$TEST_TMP/server.log" | head -1)"

# h) a flood of datagrams to a destination the mediator denies: a log line at the 1st and 10th.
wait_listen wan 5353 udp
lab exec user python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(30): s.sendto(b"x", ("203.0.113.10", 5353))
'
wait_log "$TEST_TMP/mediator.log" 'datagram to 192\.168\.77\.10:53 denied by policy \(10 so far on this port\)' 10
sleep 1
lines=$(grep -c 'datagram to 192\.168\.77\.10:53 denied by policy' "$TEST_TMP/mediator.log")
assert_eq 2 "$lines" "log lines for 30 denied datagrams"

# b) a connection in flight through 8081, fed line by line.
mkfifo "$TEST_TMP/in"
setsid "$LAB_TOOL" exec user socat -T60 - TCP:203.0.113.10:8081 <"$TEST_TMP/in" >"$TEST_TMP/inflight.out" 2>&1 &
_LAB_PIDS+=("$!")
exec 7>"$TEST_TMP/in"
echo one >&7
wait_log "$TEST_TMP/inflight.out" '^one$' 10

# A good reload that removes 8082 and adds 8083: the connection on 8081 goes on.
sed -i 's|8082=nosuch|8083=acme|' "$TEST_TMP/server.toml"
out=$(ctl reload)
assert_contains "$out" "unchanged  tcp:0.0.0.0:8081=acme/192.168.77.10:7777"
assert_contains "$out" "added  tcp:0.0.0.0:8083=acme/192.168.77.10:7777"
echo two >&7
wait_log "$TEST_TMP/inflight.out" '^two$' 10

# A broken file: refused whole, the reason in full on ctl's stderr, exit 1, the forwards unchanged.
echo 'bogus = 1' >>"$TEST_TMP/server.toml"
rc=0
err=$(ctl reload 2>&1 >/dev/null) || rc=$?
assert_eq 1 "$rc" "ctl reload of a broken file: exit status"
assert_contains "$err" "unknown key 'bogus' in [server]"
# The end of the message (the last allowed key) was cut off before.
[[ "$err" == *"udp-max-flows" ]] || fail "the refusal was cut: $err"
echo three >&7
wait_log "$TEST_TMP/inflight.out" '^three$' 10
wait_log "$TEST_TMP/server.log" "change refused: .*unknown key 'bogus'" 5
echo "broken reload refused in full, connection in flight kept: $(wc -l <"$TEST_TMP/inflight.out") lines echoed"

# c) keepalive changed: not applied, and said so.
sed -e '/bogus/d' -e 's/keepalive = 2/keepalive = 3/' "$TEST_TMP/server.toml" >"$TEST_TMP/next.toml"
cp "$TEST_TMP/next.toml" "$TEST_TMP/server.toml"
out=$(ctl reload)
assert_contains "$out" "not applied (needs a restart)  keepalive"
wait_log "$TEST_TMP/server.log" 'reload: keepalive changed in the configuration, but only a restart applies it' 5
out=$(ctl reload --json)
assert_contains "$out" '"restartNeeded"'
echo four >&7
wait_log "$TEST_TMP/inflight.out" '^four$' 10
exec 7>&-

# e) ctl events piped into head: gone once head is and another event comes.
setsid bash -c '"$1" exec wan "$2" ctl events | head -1 >"$3"' _ "$LAB_TOOL" "$POSTERN_BIN" "$TEST_TMP/events.out" \
    >"$TEST_TMP/events.log" 2>&1 </dev/null &
pipeline=$!
_LAB_PIDS+=("$pipeline")
end=$((SECONDS + 20))
while kill -0 "$pipeline" 2>/dev/null; do
    ((SECONDS < end)) || fail "ctl events | head -1 still running 20 s later: $(cat "$TEST_TMP/events.out")"
    ctl close acme 9999 >/dev/null 2>&1 || true # one event each ("close-failed")
    sleep 0.5
done
grep -q '"kind":"close-failed"' "$TEST_TMP/events.out" || fail "head did not get an event: $(cat "$TEST_TMP/events.out")"
echo "ctl events | head -1 ended"

# e2) while someone follows the stream, a forward's connections are in it (not in the history).
bg wan follow "$POSTERN_BIN" ctl events
end=$((SECONDS + 10))
until grep -q close-failed "$TEST_TMP/follow.log"; do # subscribed once it sees an event
    ((SECONDS < end)) || fail "ctl events saw nothing within 10 s"
    ctl close acme 9999 >/dev/null 2>&1 || true
    sleep 0.2
done
assert_eq "hello" "$(lab exec user socat -T3 - TCP:203.0.113.10:8081 <<<"hello")" "a connection through 8081"
wait_log "$TEST_TMP/follow.log" '8081=acme.*: from 203\.0\.113\.20:[0-9]+","kind":"forward-connection"' 10
wait_log "$TEST_TMP/follow.log" '8081=acme.*, 6 bytes to the mediator, 6 from it","kind":"forward-connection-closed"' 10
history=$(timeout 3 "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl events --history 2>/dev/null || true)
assert_contains "$history" '"kind":"forward-added"' "the history"
if grep -q forward-connection <<<"$history"; then fail "connection events were kept in the history"; fi
lab exec user python3 -c '
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("203.0.113.10", 5353))
'
wait_log "$TEST_TMP/follow.log" '5353=acme.*: from 203\.0\.113\.20:[0-9]+","kind":"forward-flow"' 10
echo "forward connections and flows streamed: $(grep -c 'forward-' "$TEST_TMP/follow.log") events"

# f) usage errors at run time name the subcommand; an unreadable token file is no usage error.
expect_exit "ctl forwards add without FORWARD" 64 fwd-usage "Usage: postern ctl forwards" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards add
if grep -q 'postern <subcommand>' "$TEST_TMP/fwd-usage.log"; then fail "top-level usage printed: $(cat "$TEST_TMP/fwd-usage.log")"; fi
expect_exit "an unreadable --token-file" 1 token "cannot read --token-file $TEST_TMP/none: No such file" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl --token-file "$TEST_TMP/none" status
if grep -q 'Usage' "$TEST_TMP/token.log"; then fail "usage printed for an unreadable file: $(cat "$TEST_TMP/token.log")"; fi

# i) SIGHUP to the mediator: said, not fatal (it has nothing to reload; it used to die of it).
kill -HUP "$mediator"
wait_log "$TEST_TMP/mediator.log" 'SIGHUP: the mediator reads its configuration only at start' 10
kill -0 "$mediator" 2>/dev/null || fail "the mediator died of SIGHUP"
assert_contains "$(ctl mediators)" "acme  session 1 " "the mediator's session after SIGHUP"

# g) a mediator with a wrong pin, retrying through the gateway's address (where acme comes from).
zeros=$(printf '0%.0s' {1..64})
bg lanhost wrongpin env POSTERN_STATE_DIR="$TEST_TMP/wp" "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme \
    --secret-file "$TEST_TMP/secret" --server-fingerprint "sha256:$zeros"
wrongpin=$(last_bg_pid)
end=$((SECONDS + 20))
until (($(grep -c 'the mediator refused this server' "$TEST_TMP/server.log") >= 7)); do
    if grep -q 'too many failed proofs' "$TEST_TMP/server.log"; then
        fail "a mediator refusing the server's key was throttled as a guesser: $(grep 'too many failed proofs' "$TEST_TMP/server.log" | head -1)"
    fi
    ((SECONDS < end)) || fail "the wrong-pin mediator did not retry 7 times within 20 s"
    sleep 0.2
done
echo "7 refusals of the server's key through the NAT address, no throttle"
# The real mediator, restarted meanwhile, gets in from the same address.
kill -TERM -- "-$mediator"
wait_log "$TEST_TMP/server.log" "mediator 'acme' disconnected" 10
start_mediator mediator2 --allow 192.168.77.10:7777
wait_log "$TEST_TMP/mediator2.log" "connected to 203.0.113.10:7000 as 'acme'" 15
kill -TERM -- "-$wrongpin"
echo "ok: $TEST_NAME"
