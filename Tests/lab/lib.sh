# shellcheck shell=bash
# Tests/lab/lib.sh — harness sourced by the lab tests (Tests/lab/t_*.sh).
#
#   source "$(dirname "$0")/lib.sh"
#   lab_setup                       # lab up; cleanup on EXIT/INT/TERM
#   bg wan srv socat TCP-LISTEN:5000,fork ...   # log: $TEST_TMP/srv.log
#   wait_tcp wan 203.0.113.10 5000
#   out=$(lab exec lan curl -s http://...)
#   assert_eq expected "$out" "what was checked"
#
# Tests get their own namespace set (prefix "t-" unless POSTERN_LAB_PREFIX is
# set, even to empty), so they never tear down a developer's interactive lab.
set -euo pipefail

LAB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB_TOOL="$LAB_REPO/tools/lab"
export POSTERN_LAB_PREFIX="${POSTERN_LAB_PREFIX-t-}"
TEST_NAME=$(basename "$0" .sh)
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/postern-$TEST_NAME.XXXXXX")
_LAB_PIDS=()
_LAB_UP=0
_LAB_ERR=""       # the command that ended the test through set -e, for the report

lab() { "$LAB_TOOL" "$@"; }

# Runs once, whatever way the test ends. Background commands were started as
# their own process groups, so the whole group (e.g. socat's fork children or a
# `sh -c` pipeline) is killed, by the group id we recorded.
_lab_cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM ERR
    # A test ended by set -e (not by fail) would otherwise fail without a word. The mark is a file,
    # so a fail inside $(...) counts too (its shell's variables die with it).
    if ((rc)) && [[ -n "$_LAB_ERR" && ! -e "$TEST_TMP/.failed" ]]; then fail_report "$_LAB_ERR"; fi
    for pid in "${_LAB_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${_LAB_PIDS[@]}"; do
        for ((i = 0; i < 20; i++)); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((_LAB_UP)); then lab down >/dev/null || rc=1; fi
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "logs kept in $TEST_TMP" >&2
    else
        rm -rf "$TEST_TMP"
    fi
    exit "$rc"
}
# Registered at source time so TEST_TMP is removed even without lab_setup;
# INT/TERM just exit, which runs the EXIT trap once.
trap _lab_cleanup EXIT
# -E: the ERR trap also runs inside functions. It notes the last failing command: under set -e
# that is the one that ends the test (a `set +e` stretch may note others before it).
set -E
trap '_LAB_ERR="command failed (exit $?), line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

lab_setup() {
    _LAB_UP=1
    lab up >/dev/null
}

# bg NS LOGNAME CMD... — start CMD in namespace NS in the background. setsid
# makes it a process-group leader, so its PID is also its group id.
bg() {
    local ns=$1 log=$2; shift 2
    setsid "$LAB_TOOL" exec "$ns" "$@" >"$TEST_TMP/$log.log" 2>&1 </dev/null &
    _LAB_PIDS+=("$!")
}

# wait_tcp NS HOST PORT [TIMEOUT] — poll until a TCP connect from NS succeeds.
# Note: the probe is a real connection; give one-shot listeners `fork`.
wait_tcp() {
    local ns=$1 host=$2 port=$3 end=$((SECONDS + ${4:-10}))
    # shellcheck disable=SC2016 # $1/$2 belong to the inner bash
    until lab exec "$ns" timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; do
        ((SECONDS < end)) || fail "no TCP connect from $ns to $host:$port within ${4:-10}s"
        sleep 0.1
    done
}

# wait_log FILE REGEX [TIMEOUT] — poll until an extended regex matches in FILE.
wait_log() {
    local file=$1 re=$2 end=$((SECONDS + ${3:-10}))
    until grep -Eq -- "$re" "$file" 2>/dev/null; do
        ((SECONDS < end)) || fail "'$re' did not appear in $file within ${3:-10}s"
        sleep 0.1
    done
}

assert_eq() {
    [[ "$1" == "$2" ]] || fail "${3:-assert_eq}: expected '$1', got '$2'"
}

assert_contains() {
    [[ "$1" == *"$2"* ]] || fail "${3:-assert_contains}: '$2' not found in '$1'"
}

# fail MSG — report, show the tail of every log this test wrote, and exit 1.
fail() {
    fail_report "$*"
    : >"$TEST_TMP/.failed"
    exit 1
}

# fail_report MSG — the FAIL line and the tail of every log this test wrote.
fail_report() {
    local f
    echo "FAIL: $TEST_NAME: $*" >&2
    for f in "$TEST_TMP"/*.log; do
        [[ -e "$f" ]] || continue
        echo "--- tail of $(basename "$f")" >&2
        tail -n 15 "$f" >&2
    done
}

# ------------------------------------------------------------ postern ------
# Helpers for tests that run postern itself. The binary is $POSTERN_BIN, by
# default the release build, else the debug build.
#
#   postern_setup                   # finds the binary (fails clearly) + lab_setup
#   write_secret FILE SECRET        # mode 600
#   start_server LOG [ARGS...]      # in wan: --listen 0.0.0.0:7000 --secret-file $TEST_TMP/secret
#   start_mediator LOG [ARGS...]    # in lan: --server 203.0.113.10:7000 --name acme ...
#   wait_mediator [NAME] [TIMEOUT] [ADMIN_URL]  # until `ctl mediators` lists NAME
#   ctl ARGS...                     # postern ctl in wan (the admin API is on wan's loopback)
#   wait_listen NS PORT [tcp|udp] [TIMEOUT]   # until a socket listens on PORT in NS
#   expect_exit WHAT RC LOG REGEX CMD...      # CMD must exit RC within 15 s, output matching REGEX
#   expect_retrying WHAT LOG REGEX CMD...     # CMD (a mediator) logs REGEX as an error twice, keeps running
#   last_bg_pid                     # PID (= process group) of the last `bg`

find_postern() {
    if [[ -z "${POSTERN_BIN:-}" ]]; then
        if [[ -x "$LAB_REPO/.build/release/postern" ]]; then
            POSTERN_BIN="$LAB_REPO/.build/release/postern"
        else
            POSTERN_BIN="$LAB_REPO/.build/debug/postern"
        fi
    fi
    [[ -x "$POSTERN_BIN" ]] \
        || fail "postern binary not found at '$POSTERN_BIN' (build it with 'swift build -c release' or set POSTERN_BIN)"
    export POSTERN_BIN
}

postern_setup() {
    find_postern
    lab_setup
    write_secret "$TEST_TMP/secret" "lab-secret-$RANDOM-$RANDOM-$RANDOM"
    # The server's generated TLS key and the mediator's known-servers file live with the test, so a
    # test never reads or leaves state in /var/lib/postern.
    export POSTERN_STATE_DIR="$TEST_TMP/state"
}

write_secret() {
    (umask 077; printf '%s\n' "$2" >"$1")
    chmod 600 "$1"
}

last_bg_pid() { echo "${_LAB_PIDS[-1]}"; }

start_server() {
    local log=$1; shift
    bg wan "$log" "$POSTERN_BIN" server --listen 0.0.0.0:7000 --secret-file "$TEST_TMP/secret" "$@"
    wait_listen wan 7000 tcp
    wait_listen wan 7070 tcp
}

start_mediator() {
    local log=$1; shift
    bg lan "$log" "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme \
        --secret-file "$TEST_TMP/secret" "$@"
}

ctl() { lab exec wan "$POSTERN_BIN" ctl "$@"; }

wait_mediator() {
    local name=${1:-acme} end=$((SECONDS + ${2:-10})) admin=${3:-http://127.0.0.1:7070}
    until ctl --admin "$admin" mediators --json 2>/dev/null | grep -q "\"name\" : \"$name\""; do
        ((SECONDS < end)) || fail "mediator '$name' did not connect within ${2:-10}s"
        sleep 0.1
    done
}

# expect_exit WHAT WANT_RC LOG REGEX CMD...: run CMD (bounded), check its exit
# status and that its output matches REGEX.
expect_exit() {
    local what=$1 want=$2 log=$3 re=$4 rc=0; shift 4
    timeout 15 "$@" >"$TEST_TMP/$log.log" 2>&1 || rc=$?
    ((rc != 124)) || fail "$what: still running after 15 s"
    assert_eq "$want" "$rc" "$what: exit status"
    grep -Eq -- "$re" "$TEST_TMP/$log.log" || fail "$what: '$re' not in its output: $(cat "$TEST_TMP/$log.log")"
    echo "$what: exit $rc: $(grep -E -- "$re" "$TEST_TMP/$log.log" | head -1 | sed 's/^.*\(error\|warning\)//')"
}
# expect_retrying WHAT LOG REGEX CMD...: start CMD (a full command, e.g. "$LAB_TOOL" exec lan postern
# mediator ...) in the background; within 15 s it must log an error matching REGEX at least twice
# (it retried instead of giving up) and still be running. It is left running: last_bg_pid.
expect_retrying() {
    local what=$1 log=$2 re=$3 end=$((SECONDS + 15)) n pid; shift 3
    setsid "$@" >"$TEST_TMP/$log.log" 2>&1 </dev/null &
    pid=$!
    _LAB_PIDS+=("$pid")
    until n=$(grep -E -- "$re" "$TEST_TMP/$log.log" 2>/dev/null | grep -c 'error' || true); ((n >= 2)); do
        kill -0 "$pid" 2>/dev/null || fail "$what: exited (it must keep retrying): $(tail -5 "$TEST_TMP/$log.log")"
        ((SECONDS < end)) || fail "$what: '$re' was not logged as an error twice within 15 s: $(tail -5 "$TEST_TMP/$log.log")"
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null || fail "$what: exited (it must keep retrying)"
    echo "$what: still running, error logged $n times: $(grep -E -- "$re" "$TEST_TMP/$log.log" | head -1 | sed 's/^.*error//')"
}
wait_listen() {
    local ns=$1 port=$2 proto=${3:-tcp} end=$((SECONDS + ${4:-10})) flag=-Htln
    [[ $proto == udp ]] && flag=-Huln
    until lab exec "$ns" ss "$flag" "sport = :$port" | grep -q .; do
        ((SECONDS < end)) || fail "nothing listens on $proto port $port in $ns within ${4:-10}s"
        sleep 0.1
    done
}

# tun_route_via_server: the operator's part of TUN mode (README, "TUN mode"): user routes the LAN
# through wan, which forwards it and masquerades it onto the server's pts-* devices.
tun_route_via_server() {
    lab exec user ip route add 192.168.77.0/24 via 203.0.113.10
    lab exec wan sysctl -qw net.ipv4.conf.eth0.forwarding=1
    lab exec wan nft -f - <<'NFT'
table ip postern_tun {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "pts-*" masquerade
    }
}
NFT
}

# wait_mediator_off_udp [LOG_NAME] [SECONDS]: each end picks its datagram path by what it hears
# (protocol.md §9.9), so after the gateway blocks the channel the mediator may still hear the server's
# keepalives a moment after the server moved to TCP, and send one more datagram into the block. Waits
# until the mediator's log says its channel is down too.
wait_mediator_off_udp() {
    wait_log "$TEST_TMP/${1:-mediator}.log" 'UDP channel [0-9]+ of session [0-9]+ is down' "${2:-10}"
}

# net_snapshot NS...: what TUN mode and the raw LAN presence may touch in those namespaces — links,
# addresses, IPv4/IPv6 routes and rules, proxy ARP/NDP entries, the IPv4/IPv6 conf and neigh sysctls —
# so a test can compare before and after.
net_snapshot() {
    local ns
    for ns in "$@"; do
        echo "== $ns"
        lab exec "$ns" ip -d link show
        lab exec "$ns" ip addr show
        lab exec "$ns" ip route show table all
        lab exec "$ns" ip -6 route show table all
        lab exec "$ns" ip rule show
        lab exec "$ns" ip neigh show proxy
        lab exec "$ns" ip -6 neigh show proxy
        lab exec "$ns" sysctl -a 2>/dev/null | grep -E '^net\.ipv4\.(ip_forward|conf\.|neigh\.)|^net\.ipv6\.(conf|neigh)\.' | sort
    done
}

# settled_snapshot NS...: sets `before` to net_snapshot once two in a row agree and no address is
# still tentative (an IPv6 link-local address can appear a moment after the lab is up).
settled_snapshot() {
    local end=$((SECONDS + 15)) previous=
    while :; do
        before=$(net_snapshot "$@")
        ! grep -q tentative <<<"$before" && [[ "$before" == "$previous" ]] && return 0
        ((SECONDS < end)) || fail "the lab's addresses did not settle within 15 s"
        previous=$before
        sleep 0.5
    done
}

# assert_as_before WHAT NS...: net_snapshot of NS must equal `before`; else the diff and a failure.
assert_as_before() {
    local what=$1 after
    shift
    after=$(net_snapshot "$@")
    if [[ "$before" != "$after" ]]; then
        diff <(echo "$before") <(echo "$after") >&2 || true
        fail "$what: not as before"
    fi
}

# field KEY: one field of the first mediator's datagram view in `ctl mediators --json` (path,
# delivered, ...): the UDP tests' one mediator.
field() {
    ctl mediators --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['datagrams']['$1'])"
}

# wait_path WANT SECONDS: until that mediator's datagrams take WANT (udp or tcp).
wait_path() {
    local want=$1 end=$((SECONDS + $2))
    until [[ $(field path 2>/dev/null) == "$want" ]]; do
        ((SECONDS < end)) || fail "datagrams did not move to $want within $2 s: $(ctl mediators)"
        sleep 0.2
    done
}

# replay_inject NS CAPTURE DIRECTION [inject args...]: `postern replay CAPTURE --packets DIRECTION
# --inject ...` in NS. When nothing of that side can be injected (every conversation skipped, or none
# from it), the injector says why and exits 2: reported here, and the capturing end reports the
# conversations as skipped. Any other failure fails the test.
replay_inject() {
    local ns=$1 capture=$2 dir=$3 irc=0 iout
    shift 3
    iout=$(lab exec "$ns" "$POSTERN_BIN" replay "$capture" --packets "$dir" --inject "$@" 2>&1) || irc=$?
    if ((irc == 2)) && grep -q "^postern replay: sent 0 packets from the $dir: " <<<"$iout"; then
        echo "$(basename "$capture"), the $dir's packets: nothing to inject: ${iout#*: sent 0 packets from the $dir: }" | cut -c1-200
    elif ((irc != 0)); then
        fail "$(basename "$capture"): injecting the $dir's packets from $ns failed ($irc): $iout"
    fi
}
