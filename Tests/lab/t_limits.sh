#!/usr/bin/env bash
# Bounded resources (DESIGN.md, "Security stance"): a flood of OPEN requests hits the mediator's
# port limit with a clear error while the session stays usable, and 1,000 unauthenticated
# connections held open on the service port do not keep a real mediator out.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
postern_setup

bg lanhost http python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP"
echo "hello through the limits" >"$TEST_TMP/index.html"
wait_listen lanhost 80

# 1,000 idle connections to the service port, held open for the whole test, from the user's side.
cat >"$TEST_TMP/hold.py" <<'PY'
import socket, sys, time
held = []
for i in range(1000):
    s = socket.socket()
    s.connect(("203.0.113.10", 7000))
    held.append(s)
print("holding", len(held), flush=True)
time.sleep(60)
PY
start_server server --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80
bg user hold python3 "$TEST_TMP/hold.py"
wait_log "$TEST_TMP/hold.log" '^holding 1000' 20
start_mediator mediator --max-ports 20
wait_mediator acme 10
echo "a real mediator connected while 1000 unauthenticated connections were held"
grep -q "unauthenticated connections" "$TEST_TMP/server.log" \
    || fail "the server did not bound its unauthenticated connections"

# LISTEN is off unless the mediator enables it: refused by its policy, and it says so.
id=$(ctl open acme tcp 0.0.0.0:19999 | awk '{print $2}')
if out=$(ctl listen acme "$id" 2>&1); then fail "listen succeeded without --allow-listen: $out"; fi
assert_contains "$out" "denied by policy" "listen without --allow-listen"
grep -q "denied by policy" "$TEST_TMP/mediator.log" || fail "the mediator did not log the denied listen"
ctl close acme "$id" >/dev/null

# A flood of OPENs: the first 20 succeed, then limitExceeded, and the session stays up.
opened=0
for i in $(seq 1 25); do
    if out=$(ctl open acme tcp "0.0.0.0:$((20000 + i))" 2>&1); then
        opened=$((opened + 1))
    else
        assert_contains "$out" "limit exceeded" "error of open #$i"
    fi
done
echo "opened $opened ports before the limit"
assert_eq 20 "$opened" "ports opened under --max-ports 20"
grep -q "limit 20" "$TEST_TMP/mediator.log" || fail "the mediator did not log the limit"

# Closing ports frees room; the forward (an implicit open) works again.
ids=$(ctl ports acme --json | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))')
for id in $ids; do ctl close acme "$id" >/dev/null; done
page=$(lab exec user curl -sS --max-time 5 http://203.0.113.10:8080/) || fail "forward failed after the flood"
assert_contains "$page" "hello through the limits" "page through the forward"
ctl mediators | grep -q '^acme' || fail "acme is no longer connected"
echo "ok: the session survived the flood"
