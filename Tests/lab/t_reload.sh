#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Live reconfiguration (issue 14): the server runs with --config; while a long, rate-limited
# download runs through forward A (tcp:0.0.0.0:8080=acme/192.168.77.10:80):
#  - ctl reload with B (server side) and R (mediator side) removed and C added: C serves at once,
#    B's port and R's port on the mediator are closed, A is "unchanged";
#  - a broken config (a bad forward) is refused whole with the error (ctl exits 1); a config with
#    two forwards on one address too; and one whose new forward cannot bind (the forward it would
#    have removed is started again); everything keeps serving as before;
#  - the server tells systemd's notify socket READY=1 once bound, RELOADING=1 and READY=1 on SIGHUP;
#  - SIGHUP with B back: B serves again; a burst of 20 SIGHUPs plus a ctl reload changes nothing;
#  - ctl forwards add D serves at once and survives a reload of the file; one on a taken address or
#    one that does not parse is refused; ctl forwards remove stops it; removing it twice is refused;
#  - the download through A finishes byte-exact (SHA-256): the reloads never touched it.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mkdir -p "$TEST_TMP/www"
head -c $((12 << 20)) /dev/urandom >"$TEST_TMP/www/big.bin"
echo hello >"$TEST_TMP/www/small.txt"
want=$(sha256sum <"$TEST_TMP/www/big.bin" | cut -d' ' -f1)
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
bg wan echo socat TCP-LISTEN:9000,bind=203.0.113.10,fork,reuseaddr EXEC:cat
wait_listen lanhost 80
wait_listen wan 9000

config() { # the forwards, one per argument
    {
        echo "[server]"
        printf 'forwards = ['
        local first=1 f
        for f in "$@"; do
            ((first)) || printf ', '
            printf '"%s"' "$f"
            first=0
        done
        echo "]"
    } >"$TEST_TMP/server.toml"
}
A="tcp:0.0.0.0:8080=acme/192.168.77.10:80"
B="tcp:0.0.0.0:8081=acme/192.168.77.10:80"
C="tcp:0.0.0.0:8082=acme/192.168.77.10:80"
R="tcp:acme/0.0.0.0:2222=203.0.113.10:9000"
config "$A" "$B" "$R"
# systemd's notify socket, played by a listener that logs each message (Type=notify in the unit).
bg wan notify python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    print(s.recv(4096).decode(), flush=True)
' "$TEST_TMP/notify.sock"
end=$((SECONDS + 5))
until [[ -S "$TEST_TMP/notify.sock" ]]; do ((SECONDS < end)) || fail "no notify socket"; sleep 0.1; done
NOTIFY_SOCKET="$TEST_TMP/notify.sock" start_server server --config "$TEST_TMP/server.toml"
wait_log "$TEST_TMP/notify.log" '^READY=1$' 5
server_pid=$(last_bg_pid)
start_mediator mediator --allow-listen
wait_mediator acme
wait_listen lan 2222
fetch() { lab exec user curl -sS --fail --max-time 5 "http://203.0.113.10:$1/small.txt"; }
assert_eq hello "$(fetch 8081)" "B before the reload"

# The long transfer: 12 MiB at 1 MiB/s.
setsid "$LAB_TOOL" exec user curl -sS --fail --limit-rate 1M --max-time 60 -o "$TEST_TMP/got" \
    http://203.0.113.10:8080/big.bin >"$TEST_TMP/curl.log" 2>&1 </dev/null &
curl_pid=$!
_LAB_PIDS+=("$curl_pid")
sleep 2

config "$A" "$C"
out=$(ctl reload) || fail "ctl reload failed: $out"
echo "$out"
assert_contains "$out" "added  $C" "reload output"
assert_contains "$out" "removed  $B" "reload output"
assert_contains "$out" "removed  $R" "reload output"
assert_contains "$out" "unchanged  $A" "reload output"
assert_eq hello "$(fetch 8082)" "C right after the reload"
if fetch 8081 >/dev/null 2>&1; then fail "B still serves after it was removed"; fi
end=$((SECONDS + 5))
while lab exec lan ss -Htln "sport = :2222" | grep -q .; do
    ((SECONDS < end)) || fail "the mediator still listens on 2222 after R was removed"
    sleep 0.1
done
echo "B stopped, R's port on the mediator closed, C serves"

# Broken configurations are refused whole.
config "$A" "tcp:0.0.0.0:8083=acme/192.168.77.10:80" "tcp:nonsense"
expect_exit "reload of a config with a bad forward" 1 bad "reload refused: .*nonsense" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
config "$A" "$C" "tcp:0.0.0.0:8082=acme/192.168.77.10:81"
expect_exit "reload of a config with two forwards on one address" 1 twice "same address" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
# One that parses but cannot bind (the service port's address): C, which it would remove, comes back.
config "$A" "tcp:0.0.0.0:7000=acme/192.168.77.10:80"
expect_exit "reload of a config whose new forward cannot bind" 1 bind "reload refused: .*7000" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
assert_eq hello "$(fetch 8082)" "C after the refused reloads"
if fetch 8083 >/dev/null 2>&1; then fail "a forward of the refused config was started"; fi
grep -q "forwards unchanged, change refused" "$TEST_TMP/server.log" || fail "the refusal was not logged"

# SIGHUP, B back.
config "$A" "$B" "$C"
kill -HUP "$server_pid"
wait_listen wan 8081
assert_eq hello "$(fetch 8081)" "B after SIGHUP"
wait_log "$TEST_TMP/notify.log" '^RELOADING=1$' 5
end=$((SECONDS + 5))
until (($(grep -c '^READY=1$' "$TEST_TMP/notify.log") >= 2)); do
    ((SECONDS < end)) || fail "no READY=1 after the SIGHUP reload: $(cat "$TEST_TMP/notify.log")"
    sleep 0.1
done
echo "notify socket: $(tr '\n' ' ' <"$TEST_TMP/notify.log")"
kill -0 "$server_pid" || fail "the server died on SIGHUP"
# A burst of SIGHUPs and reloads at once: one at a time, nothing changes, nothing breaks.
for _ in $(seq 20); do kill -HUP "$server_pid"; done
out=$(ctl reload) || fail "ctl reload after the SIGHUP burst failed: $out"
assert_contains "$out" "unchanged  $B" "reload after the burst"
[[ "$out" != *added* && "$out" != *removed* ]] || fail "the burst changed something: $out"
kill -0 "$server_pid" || fail "the server died in the SIGHUP burst"
assert_eq hello "$(fetch 8081)" "B after the burst"
assert_eq hello "$(fetch 8082)" "C after the burst"

# Through the API: ctl forwards add/remove; an added forward survives a reload of the file.
D="tcp:0.0.0.0:8084=acme/192.168.77.10:80"
out=$(ctl forwards add "$D") || fail "ctl forwards add failed: $out"
assert_contains "$out" "added  $D" "ctl forwards add"
assert_eq hello "$(fetch 8084)" "D after ctl forwards add"
expect_exit "adding a forward on a taken address" 1 addtaken "add refused: .*same address" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards add "tcp:0.0.0.0:8084=acme/192.168.77.10:81"
expect_exit "adding a forward that does not parse" 1 addbad "invalid forward" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards add "tcp:0.0.0.0:8085"
out=$(ctl reload) || fail "ctl reload with an added forward failed: $out"
[[ "$out" != *removed* ]] || fail "a reload removed the forward added through the API: $out"
assert_eq hello "$(fetch 8084)" "D after a reload"
ctl forwards | grep -Eq "^tcp:0\.0\.0\.0:8084=acme/192\.168\.77\.10:80 +listening " || fail "ctl forwards does not list D"
out=$(ctl forwards remove "$D") || fail "ctl forwards remove failed: $out"
assert_contains "$out" "removed  $D" "ctl forwards remove"
if fetch 8084 >/dev/null 2>&1; then fail "D still serves after ctl forwards remove"; fi
expect_exit "removing a forward that is not running" 1 rmnone "no forward" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards remove "$D"

wait "$curl_pid" || fail "the download through A failed during the reloads: $(cat "$TEST_TMP/curl.log")"
assert_eq "$want" "$(sha256sum <"$TEST_TMP/got" | cut -d' ' -f1)" "SHA-256 of the download through A"
status=$(ctl status)
echo "$status" | grep -Eq "^tcp:0\.0\.0\.0:8080=acme/192\.168\.77\.10:80 +listening +0 +1 " \
    || fail "A should show 1 connection in total: $status"
echo "ok: $TEST_NAME"
