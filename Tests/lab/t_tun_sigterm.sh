#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A SIGTERM at any point of TUN mode's start leaves the host as it was once the process has exited.
# The start's netlink steps (device, sysctls, route, proxy neighbour entry) run on the thread pool
# while the signal is handled on the event loop; a stop that did not wait for a start under way let
# the process exit with those changes made, until the next start's journal undid them. Here each end
# is started and sent SIGTERM at delays across its start, measured from the server's "connected" line
# for that session: one at +0, one halfway, the rest in small steps over the last 50 ms before "TUN
# mode up" and 30 ms past it, as one calibration start of that end measured it on this machine
# (the mediator's start first asks the LAN for 1 s whether a host has the address, changing nothing;
# the netlink changes come in the last few milliseconds). After each exit the snapshot of its namespace (links, addresses,
# routes, proxy neighbours, sysctls, nft ruleset) must equal the one from before, with no later start
# in between to clean up. Environment: TRIES (per end, default 14).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

TRIES=${TRIES:-14}
now_ms() { date +%s%3N; }

snap() {
    net_snapshot "$1"
    lab exec "$1" nft list ruleset
}
# connected_count: how many sessions of acme the server admitted so far.
connected_count() { grep -c "mediator 'acme' connected from" "$TEST_TMP/$1.log" 2>/dev/null || true; }
# after_connect LOG N MS: wait (5 ms polls, 20 s at most) until LOG has more than N "connected"
# lines, then MS milliseconds more.
after_connect() {
    local end=$((SECONDS + 20))
    until (($(connected_count "$1") > $2)); do
        ((SECONDS < end)) || fail "no new session of acme in $1.log within 20 s"
        sleep 0.005
    done
    sleep "$(printf '%d.%03d' $(($3 / 1000)) $(($3 % 1000)))"
}
# measure LOG N UPLOG REGEX: milliseconds from LOG's next "connected" line to REGEX in UPLOG.
measure() {
    local t0 end=$((SECONDS + 20))
    after_connect "$1" "$2" 0
    t0=$(now_ms)
    until grep -q -- "$4" "$TEST_TMP/$3.log" 2>/dev/null; do
        ((SECONDS < end)) || fail "no '$4' in $3.log within 20 s"
        sleep 0.005
    done
    echo $(($(now_ms) - t0))
}
# stop_and_wait PID WHAT: SIGTERM to the group of PID, then wait (at most 10 s) for it to exit.
stop_and_wait() {
    local end=$((SECONDS + 10))
    kill -TERM -- "-$1" 2>/dev/null || true
    while kill -0 -- "-$1" 2>/dev/null; do
        ((SECONDS < end)) || fail "$2: still running 10 s after SIGTERM"
        sleep 0.02
    done
    wait "$1" 2>/dev/null || true
}
# delay_of I SPAN: try I's delay in ms: 0, SPAN/2, then SPAN-50 onwards in steps of 80/(TRIES-2).
delay_of() {
    local d
    case $1 in
        0) echo 0 ;;
        1) echo $(($2 / 2)) ;;
        *)
            d=$(($2 - 50 + ($1 - 2) * 80 / (TRIES - 2)))
            echo $((d < 0 ? 0 : d))
            ;;
    esac
}
# check_ns NS WANT WHAT [WAIT]: NS's snapshot must equal WANT, at once or within WAIT seconds.
check_ns() {
    local end=$((SECONDS + ${4:-0})) now
    while :; do
        now=$(snap "$1")
        [[ "$now" == "$2" ]] && return 0
        if ((SECONDS >= end)); then
            diff <(echo "$2") <(echo "$now") >&2 || true
            fail "$3: $1 is not as before"
        fi
        sleep 0.2
    done
}

tun_route_via_server
settled_snapshot lan lanhost wan
lan_before=$(snap lan)
wan_before=$(snap wan)

# 1. The mediator: a fresh one per try, SIGTERM at i * STEP after the server admitted it.
start_server server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
server_pid=$(last_bg_pid)
start_mediator calibrate --tun 192.168.77.50/24 --udp-keepalive 0.5
pid=$(last_bg_pid)
span=$(measure server 0 calibrate 'TUN mode up')
stop_and_wait "$pid" "calibration mediator"
check_ns lan "$lan_before" "calibration mediator stopped"
check_ns wan "$wan_before" "server's end after the calibration mediator stopped" 10
echo "mediator: connect to TUN mode up took $span ms"
mediator_ups=0
delays=
for ((i = 0; i < TRIES; i++)); do
    delay=$(delay_of "$i" "$span")
    n=$(connected_count server)
    start_mediator "mediator$i" --tun 192.168.77.50/24 --udp-keepalive 0.5
    pid=$(last_bg_pid)
    after_connect server "$n" "$delay"
    delays+=" $delay"
    stop_and_wait "$pid" "mediator (SIGTERM at +$delay ms)"
    grep -q 'TUN mode up' "$TEST_TMP/mediator$i.log" && mediator_ups=$((mediator_ups + 1))
    check_ns lan "$lan_before" "mediator SIGTERM at +$delay ms after connect"
    # The server undoes its end when it sees the session end.
    check_ns wan "$wan_before" "server's end after the mediator's SIGTERM at +$delay ms" 10
done
echo "mediator: $TRIES SIGTERMs at +${delays# } ms, TUN mode up before $mediator_ups of them; lan as before after each"
stop_and_wait "$server_pid" server

# 2. The server: one mediator redials; a fresh server per try, SIGTERM at i * STEP after it
# admitted the mediator (its start opens the device once the mediator answered TUN_READY).
start_mediator mediator --tun 192.168.77.50/24 --udp-keepalive 0.5
mediator_pid=$(last_bg_pid)
start_server calibrate_server --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
pid=$(last_bg_pid)
span=$(measure calibrate_server 0 calibrate_server "TUN mode of mediator 'acme' up")
stop_and_wait "$pid" "calibration server"
check_ns wan "$wan_before" "calibration server stopped"
check_ns lan "$lan_before" "mediator's end after the calibration server stopped" 10
echo "server: connect to TUN mode up took $span ms"
server_ups=0
delays=
for ((i = 0; i < TRIES; i++)); do
    delay=$(delay_of "$i" "$span")
    start_server "server$i" --keepalive 2 --dead-timeout 10 --udp-keepalive 0.5 --tun
    pid=$(last_bg_pid)
    after_connect "server$i" 0 "$delay"
    delays+=" $delay"
    stop_and_wait "$pid" "server (SIGTERM at +$delay ms)"
    grep -q "TUN mode of mediator 'acme' up" "$TEST_TMP/server$i.log" && server_ups=$((server_ups + 1))
    check_ns wan "$wan_before" "server SIGTERM at +$delay ms after connect"
    check_ns lan "$lan_before" "mediator's end after the server's SIGTERM at +$delay ms" 10
done
echo "server: $TRIES SIGTERMs at +${delays# } ms, TUN mode up before $server_ups of them; wan as before after each"
stop_and_wait "$mediator_pid" mediator
check_ns lan "$lan_before" "after the last mediator stopped"
echo "PASS"
