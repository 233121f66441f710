#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Live reconfiguration of SOCKS5 listeners (issue 14): the server runs with --config holding
# `socks` and `socks-users`; while a long, rate-limited download runs through listener 1080:
#  - SIGHUP with 1081 and 1082 added: both serve at once, 1080 is unchanged;
#  - ctl reload with 1081 removed: it refuses new connections, the others serve;
#  - refused whole, the running listeners serving on: a listener on an address in use (the service
#    port), two listeners on one address, a socks-users file that is missing;
#  - the accounts file is read again: a changed password works after the reload, the old one not;
#  - ctl forwards add socks:… serves and survives a reload of the file; a spec that does not parse is
#    refused; ctl forwards list and ctl status show the listeners with their counters; remove stops it;
#  - the download through 1080 finishes byte-exact (SHA-256): the reloads never touched it;
#  - without accounts, a listener off loopback is refused by a reload and by the API.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

mkdir -p "$TEST_TMP/www"
head -c $((12 << 20)) /dev/urandom >"$TEST_TMP/www/big.bin"
echo hello >"$TEST_TMP/www/small.txt"
want=$(sha256sum <"$TEST_TMP/www/big.bin" | cut -d' ' -f1)
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_listen lanhost 80

PW="pw-$RANDOM-$RANDOM"
users() { (umask 077; printf 'alice %s\n' "$1" >"$TEST_TMP/users"); }
users "$PW"
config() { # USERS-FILE, then the listeners, one per argument
    local file=$1 first=1 s; shift
    {
        echo "[server]"
        echo "socks-users = \"$file\""
        printf 'socks = ['
        for s in "$@"; do
            ((first)) || printf ', '
            printf '"%s"' "$s"
            first=0
        done
        echo "]"
    } >"$TEST_TMP/server.toml"
}
config "$TEST_TMP/users" "0.0.0.0:1080=acme"
start_server server --config "$TEST_TMP/server.toml"
server_pid=$(last_bg_pid)
wait_listen wan 1080
start_mediator mediator --allow-listen
wait_mediator acme
fetch() { # PORT [PASSWORD]
    lab exec user curl -sS --fail --max-time 5 --socks5-hostname "203.0.113.10:$1" --proxy-user "alice:${2:-$PW}" \
        http://192.168.77.10/small.txt
}
refused() { ! fetch "$@" >/dev/null 2>&1; }
assert_eq hello "$(fetch 1080)" "1080 before the reloads"

# The long transfer: 12 MiB at 512 KiB/s through 1080 (some 24 s).
setsid "$LAB_TOOL" exec user curl -sS --fail --limit-rate 512K --max-time 90 --socks5-hostname 203.0.113.10:1080 \
    --proxy-user "alice:$PW" -o "$TEST_TMP/got" http://192.168.77.10/big.bin >"$TEST_TMP/curl.log" 2>&1 </dev/null &
curl_pid=$!
_LAB_PIDS+=("$curl_pid")
download_start=$SECONDS
end=$((SECONDS + 10))
until [[ -s "$TEST_TMP/got" ]]; do ((SECONDS < end)) || fail "the download did not start"; sleep 0.1; done

# SIGHUP: two listeners added.
config "$TEST_TMP/users" "0.0.0.0:1080=acme" "0.0.0.0:1081=acme" "0.0.0.0:1082=acme"
kill -HUP "$server_pid"
wait_listen wan 1081
wait_listen wan 1082
assert_eq hello "$(fetch 1081)" "1081 after SIGHUP"
assert_eq hello "$(fetch 1082)" "1082 after SIGHUP"
wait_log "$TEST_TMP/server.log" "SOCKS5 listeners: 2 added, 0 removed, 1 unchanged" 5

# ctl reload: 1081 removed; its port refuses new connections.
config "$TEST_TMP/users" "0.0.0.0:1080=acme" "0.0.0.0:1082=acme"
out=$(ctl reload) || fail "ctl reload failed: $out"
echo "$out"
assert_contains "$out" "removed  socks 0.0.0.0:1081=acme" "reload output"
assert_contains "$out" "unchanged  socks 0.0.0.0:1080=acme" "reload output"
assert_contains "$out" "unchanged  socks 0.0.0.0:1082=acme" "reload output"
kill -0 "$curl_pid" 2>/dev/null || fail "the download through 1080 ended before the reloads were done: the test proves nothing"
refused 1081 || fail "1081 still takes connections after it was removed"
if lab exec wan ss -Htln "sport = :1081" | grep -q .; then fail "something still listens on 1081"; fi
assert_eq hello "$(fetch 1082)" "1082 after 1081 went"

# Broken configurations are refused whole; the running listeners serve on.
config "$TEST_TMP/users" "0.0.0.0:1080=acme" "0.0.0.0:1083=acme" "0.0.0.0:7000=acme"
expect_exit "reload of a listener on an address in use" 1 inuse "reload refused: .*7000" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
refused 1083 || fail "a listener of the refused config was started"
assert_eq hello "$(fetch 1082)" "1082 (which the refused config removed) after the refusal"
config "$TEST_TMP/users" "0.0.0.0:1080=acme" "0.0.0.0:1082=acme" "0.0.0.0:1082=beta"
expect_exit "reload of two listeners on one address" 1 twice "same address" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
config "$TEST_TMP/missing-users" "0.0.0.0:1080=acme" "0.0.0.0:1082=acme"
expect_exit "reload with a missing socks-users file" 1 nousers "reload refused: .*missing-users" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
config "$TEST_TMP/users" "0.0.0.0:1080=acme" "0.0.0.0:1082=acme" "0.0.0.0:1084=bad/name"
expect_exit "reload with a listener that does not parse" 1 badspec "reload refused: .*bad/name" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
assert_eq hello "$(fetch 1080)" "1080 after the refused reloads"
assert_eq hello "$(fetch 1082)" "1082 after the refused reloads"

# The accounts file is read again.
NEW="pw2-$RANDOM-$RANDOM"
users "$NEW"
config "$TEST_TMP/users" "0.0.0.0:1080=acme" "0.0.0.0:1082=acme"
out=$(ctl reload) || fail "ctl reload with new accounts failed: $out"
assert_eq hello "$(fetch 1082 "$NEW")" "the new password after the reload"
refused 1082 "$PW" || fail "the old password still works after the accounts changed"

# Through the API.
S="socks:0.0.0.0:1085=acme"
out=$(ctl forwards add "$S") || fail "ctl forwards add $S failed: $out"
assert_contains "$out" "added  socks 0.0.0.0:1085=acme" "ctl forwards add"
assert_eq hello "$(fetch 1085 "$NEW")" "1085 after ctl forwards add"
expect_exit "adding a SOCKS listener that does not parse" 1 addbad "1085x" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards add "socks:0.0.0.0:1085x=acme"
expect_exit "adding a SOCKS listener twice" 1 addtwice "running already" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards add "$S"
out=$(ctl reload) || fail "ctl reload with an added listener failed: $out"
[[ "$out" != *removed* ]] || fail "a reload removed the listener added through the API: $out"
assert_eq hello "$(fetch 1085 "$NEW")" "1085 after a reload"
list=$(ctl forwards)
echo "$list"
echo "$list" | grep -Eq "^socks:0\.0\.0\.0:1085=acme +listening +username/password +0 +2 " || fail "ctl forwards does not list 1085 with its 2 connections"
status=$(ctl status)
echo "$status" | grep -Eq "^socks:0\.0\.0\.0:1082=acme +listening +username/password " || fail "ctl status does not list 1082"
out=$(ctl forwards remove "$S") || fail "ctl forwards remove failed: $out"
assert_contains "$out" "removed  socks 0.0.0.0:1085=acme" "ctl forwards remove"
refused 1085 "$NEW" || fail "1085 still takes connections after ctl forwards remove"
expect_exit "removing a listener that is not running" 1 rmnone "no 'socks 0.0.0.0:1085=acme'" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards remove "$S"

echo "reloads done after $((SECONDS - download_start)) s of the download; waiting for its end"
wait "$curl_pid" || fail "the download through 1080 failed during the reloads: $(cat "$TEST_TMP/curl.log")"
assert_eq "$want" "$(sha256sum <"$TEST_TMP/got" | cut -d' ' -f1)" "SHA-256 of the download through 1080"

# No accounts: a listener off loopback is refused, by a reload and by the API (no --socks-no-auth).
{ echo "[server]"; echo 'socks = ["0.0.0.0:1080=acme"]'; } >"$TEST_TMP/server.toml"
expect_exit "reload to a non-loopback listener without accounts" 1 noauth "reload refused: .*without --socks-users" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl reload
assert_eq hello "$(fetch 1080 "$NEW")" "1080 with its accounts after the refused reload"
{ echo "[server]"; echo 'socks = ["127.0.0.1:1080=acme"]'; } >"$TEST_TMP/server.toml"
out=$(ctl reload) || fail "ctl reload to a loopback listener without accounts failed: $out"
assert_contains "$out" "added  socks 127.0.0.1:1080=acme" "reload to loopback"
refused 1080 "$NEW" || fail "0.0.0.0:1080 still takes connections after the reload to 127.0.0.1:1080"
expect_exit "adding a non-loopback listener without accounts" 1 addnoauth "add refused: .*without --socks-users" \
    "$LAB_TOOL" exec wan "$POSTERN_BIN" ctl forwards add "socks:0.0.0.0:1086=acme"
if lab exec wan ss -Htln "sport = :1086" | grep -q .; then fail "the refused listener on 1086 listens"; fi
kill -0 "$server_pid" || fail "the server died"
echo "ok: $TEST_NAME"
