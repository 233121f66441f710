#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `postern demo` as the README runs it: found on $PATH (a bare argv[0]), run from another directory,
# it succeeds and removes its lab again; interrupted (Ctrl-C, SIGTERM) at any step it still removes
# its namespaces, its processes and its work directory, and exits 128 + the signal.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
find_postern
prefix="${POSTERN_LAB_PREFIX}demo-"
# The demo makes and removes its own lab; if this test fails half-way, that lab goes too.
trap 'rc=$?; POSTERN_LAB_PREFIX=$prefix "$LAB_TOOL" down >/dev/null 2>&1; (exit $rc); _lab_cleanup' EXIT
mkdir -p "$TEST_TMP/bin" "$TEST_TMP/elsewhere"
ln -s "$POSTERN_BIN" "$TEST_TMP/bin/postern"

leftovers() {
    ip netns list | grep -E "^${prefix}" || true
    pgrep -af "postern-demo-$1" | grep -v pgrep || true
    [[ $1 == "*" ]] || [[ ! -e "${TMPDIR:-/tmp}/postern-demo-$1" ]] || echo "${TMPDIR:-/tmp}/postern-demo-$1"
}

rc=0
(cd "$TEST_TMP/elsewhere" && PATH="$TEST_TMP/bin:$PATH" exec timeout 60 postern demo --prefix "$prefix") >"$TEST_TMP/demo.log" 2>&1 &
pid=$!
wait "$pid" || rc=$?
assert_eq 0 "$rc" "postern demo from \$PATH: exit status ($(tail -3 "$TEST_TMP/demo.log"))"
grep -q "Demo succeeded" "$TEST_TMP/demo.log" || fail "the demo did not say it succeeded: $(tail -5 "$TEST_TMP/demo.log")"
left=$(leftovers "*")
[[ -z "$left" ]] || fail "the demo left behind: $left"

# Interrupted while its lab comes up, while a step runs a short child (the TLS key), then while its
# server and mediator run.
for at in "Bringing up the lab" "Starting an HTTP server" "Making the server.s TLS key" "Starting mediator" "The server sees the mediator"; do
    for sig in INT TERM; do
        (cd "$TEST_TMP/elsewhere" && PATH="$TEST_TMP/bin:$PATH" exec postern demo --prefix "$prefix") >"$TEST_TMP/demo.log" 2>&1 &
        pid=$!
        end=$((SECONDS + 30))
        until grep -q "$at" "$TEST_TMP/demo.log"; do
            ((SECONDS < end)) || fail "the demo did not reach '$at': $(tail -3 "$TEST_TMP/demo.log")"
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.02
        done
        kill "-$sig" "$pid" 2>/dev/null || true
        rc=0
        wait "$pid" || rc=$?
        want=$((128 + $(kill -l "$sig")))
        # One that got to its end before the signal exits 0: cleaned up all the same.
        [[ $rc == "$want" || $rc == 0 ]] || fail "demo stopped by SIG$sig at '$at': exit $rc, not $want: $(tail -3 "$TEST_TMP/demo.log")"
        left=$(leftovers "$pid")
        [[ -z "$left" ]] || fail "demo stopped by SIG$sig at '$at' left behind: $left"
        echo "SIG$sig at '$at': exit $rc, nothing left behind"
    done
done
echo "ok: postern demo runs from \$PATH and cleans up, also when interrupted"
