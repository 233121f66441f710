#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The mediator comes back by itself, and so do the forwards:
#  a) the server process is killed (SIGKILL) and started again on the same
#     port: the forward works again within 5 s of the kill;
#  b) the gateway drops the tunnel's packets for 6 s (dead timeout 3 s): both
#     ends log a keepalive timeout; after unblock the mediator reconnects, the
#     server lists acme once, and both forwards (tcp: to the LAN, and tcp:acme/
#     from the LAN) work again, the LAN listener without "address in use";
#  c) the gateway silently drops the mediator's current tunnel flow (only that
#     flow: a NAT that lost its mapping) and the mediator dies (SIGKILL), so the
#     server never hears of it; a new mediator process connects before the
#     server's dead timeout: the server probes the stale session (a PING that
#     must be answered within --name-probe-timeout, 1 s here), ends it unanswered
#     and lets the new one take the name, lists acme once, and both forwards
#     work on the new session.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

SERVER_ARGS=(--keepalive 1 --dead-timeout 3 --name-probe-timeout 1
    --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80
    --forward tcp:acme/0.0.0.0:9000=203.0.113.10:2222)

echo "lan web" >"$TEST_TMP/index.html"
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP"
bg wan echo socat TCP-LISTEN:2222,bind=203.0.113.10,reuseaddr,fork EXEC:cat
wait_listen lanhost 80
wait_listen wan 2222

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
forward_ok() { lab exec user curl -sf --max-time 2 http://203.0.113.10:8080/index.html 2>/dev/null | grep -q 'lan web'; }
reverse_ok() {
    [[ "$(lab exec lanhost socat -T3 - TCP:192.168.77.2:9000,connect-timeout=2 <<<"ping $1" 2>/dev/null)" == "ping $1" ]]
}
# wait_ok WHAT T0 LIMIT: poll the forward; print and check the time since T0.
wait_ok() {
    local what=$1 t0=$2 limit=$3 secs
    until forward_ok; do
        (($(echo "$(since "$t0") > 20" | bc))) && fail "$what: the forward did not come back within 20 s"
        sleep 0.1
    done
    secs=$(since "$t0")
    printf '%s: forward works again after %.2f s\n' "$what" "$secs"
    (($(echo "$secs < $limit" | bc))) || fail "$what: took ${secs}s (limit ${limit}s)"
}
listens() { grep -c "mediator 'acme' listens on 0\\.0\\.0\\.0:9000" "$TEST_TMP/$1.log" || true; }

start_server server1 "${SERVER_ARGS[@]}"
srv=$(last_bg_pid)
start_mediator mediator --allow-listen
med=$(last_bg_pid)
wait_mediator acme
wait_log "$TEST_TMP/server1.log" "listens on 0\\.0\\.0\\.0:9000"
forward_ok || fail "the forward does not work at the start"
reverse_ok 1 || fail "the reverse forward does not work at the start"

# --- a) server restart
t0=$(now)
kill -KILL -- "-$srv"
wait "$srv" 2>/dev/null || true
start_server server2 "${SERVER_ARGS[@]}"
wait_ok "server restart" "$t0" 5
wait_log "$TEST_TMP/mediator.log" 'tunnel lost' 1
wait_log "$TEST_TMP/server2.log" "listens on 0\\.0\\.0\\.0:9000" 5
reverse_ok 2 || fail "the reverse forward does not work after the server restart"

# --- b) the path dies silently
lab block-tunnel 7000
tb=$(now)
wait_log "$TEST_TMP/server2.log" "mediator 'acme' disconnected: keepalive timeout" 6
wait_log "$TEST_TMP/mediator.log" 'tunnel lost: keepalive timeout' 6
echo "both ends declared the tunnel dead after $(printf '%.2f' "$(since "$tb")") s"
if forward_ok; then fail "the forward worked while the tunnel was blocked"; fi
sleep "$(echo "r = 6 - $(since "$tb"); if (r < 0) r = 0; r" | bc)"
lab unblock-tunnel 7000
wait_ok "blocked for 6 s" "$(now)" 8
meds=$(ctl mediators)
assert_eq 1 "$(grep -c '^acme ' <<<"$meds")" "sessions of acme listed after the reconnect"
# The mediator's LAN listener for the reverse forward comes back on the same port.
end=$((SECONDS + 5))
until (($(listens server2) >= 2)); do
    ((SECONDS < end)) || fail "the reverse forward was not set up again after the reconnect"
    sleep 0.1
done
reverse_ok 3 || fail "the reverse forward does not work after the reconnect"
if grep -Eiq 'address (already )?in use|cannot listen' "$TEST_TMP/server2.log" "$TEST_TMP/mediator.log"; then
    fail "address in use after reconnect: $(grep -Ei 'address (already )?in use|cannot listen' "$TEST_TMP"/*.log | head -3)"
fi

# --- c) a new mediator process replaces a session the server still holds
flow=$(lab exec lan ss -Htn state established '( dport = :7000 )' | awk '{print $3}')
[[ "$flow" =~ ^192\.168\.77\.2:([0-9]+)$ ]] || fail "cannot find the mediator's tunnel flow (got '$flow')"
oldport=${BASH_REMATCH[1]}
lab block-tunnel "$oldport"
kill -KILL -- "-$med"
wait "$med" 2>/dev/null || true
t0=$(now)
start_mediator mediator2 --allow-listen
wait_log "$TEST_TMP/server2.log" "mediator 'acme' disconnected: keepalive timeout: no answer to a liveness probe within" 5
wait_log "$TEST_TMP/server2.log" "the session waiting for the name replaces it" 1
printf 'new session replaced the stale one after %.2f s\n' "$(since "$t0")"
wait_ok "stale session replaced" "$t0" 5
assert_eq 1 "$(ctl mediators | grep -c '^acme ')" "sessions of acme listed after the replacement"
end=$((SECONDS + 5))
until (($(listens server2) >= 3)); do
    ((SECONDS < end)) || fail "the reverse forward was not set up on the new session"
    sleep 0.1
done
reverse_ok 4 || fail "the reverse forward does not work on the new session"
if grep -Eiq 'address (already )?in use|cannot listen' "$TEST_TMP/server2.log" "$TEST_TMP/mediator2.log"; then
    fail "address in use after the replacement"
fi
lab unblock-tunnel "$oldport"
echo "ok: $TEST_NAME"
