#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Nothing unauthenticated stops a mediator, and a live mediator's name cannot be taken (issue 8,
# items 1 and 4; docs/security.md):
#  a) a fake service port on the gateway answers every ClientHello with a fatal TLS alert
#     (bad_certificate, unknown_ca, certificate_required: 7 bytes, no key): the mediator logs each
#     as an error, stays up and retries, and connects once the real server is reachable again;
#  b) a fake TLS server on the gateway answers HELLO with a forged REFUSED authenticationFailed to a
#     mediator on first use: logged, retried, nothing recorded; it connects (and records the real
#     key) once the fake is gone;
#  c) a second process connecting as acme with the shared secret is refused "name in use" (both
#     sides log it) while the first keeps its session and the forward keeps serving; the server
#     warned at startup that one secret serves every name;
#  d) the first is frozen (SIGSTOP): its session does not answer the server's probe, so the second
#     gets in within seconds and the forward works through it; thawed, the first is refused in turn
#     (no flapping).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

echo "lan web" >"$TEST_TMP/index.html"
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP"
wait_listen lanhost 80
forward_ok() { lab exec user curl -sf --max-time 2 http://203.0.113.10:8080/index.html 2>/dev/null | grep -q 'lan web'; }
# errors NAME REGEX: error lines of a log matching REGEX
errors() { grep -E -- "$2" "$TEST_TMP/$1.log" 2>/dev/null | grep -c ' error ' || true; }

start_server server --keepalive 1 --dead-timeout 10 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80
wait_log "$TEST_TMP/server.log" 'TLS key fingerprint: sha256:[0-9a-f]{64}'
fp=$(grep -Eo 'sha256:[0-9a-f]{64}' "$TEST_TMP/server.log" | head -1)
grep -q "warning.*one secret shared by every mediator name" "$TEST_TMP/server.log" \
    || fail "the server did not warn that one secret serves every name"

# ---------------------------------------------- a) fatal TLS alerts on the path -
# Each connection gets the next of the three alerts, as a 7-byte plaintext record.
cat >"$TEST_TMP/alerts.py" <<'EOF'
import socket, sys
alerts = [(42, "bad_certificate"), (48, "unknown_ca"), (116, "certificate_required")]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7443)); s.listen(16)
n = 0
while True:
    c, peer = s.accept()
    c.settimeout(2)
    try:
        c.recv(4096)  # the ClientHello
        code, name = alerts[n % 3]
        c.sendall(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, code]))
        print(f"connection {n + 1} from {peer[0]}: sent {name}", flush=True)
    except OSError as e:
        print(f"connection {n + 1}: {e}", flush=True)
    c.close()
    n += 1
EOF
bg gw alerts python3 "$TEST_TMP/alerts.py"
wait_listen gw 7443
lab intercept 7000 7443
bg lan mediator "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/secret" \
    --known-servers "$TEST_TMP/known"
med_a=$(last_bg_pid)
end=$((SECONDS + 15))
until (($(errors mediator "refused this mediator's certificate") >= 2)) \
    && (($(errors mediator "requires a mediator certificate") >= 1)); do
    kill -0 "$med_a" 2>/dev/null || fail "the mediator exited on a TLS alert"
    ((SECONDS < end)) || fail "the mediator did not log the three alerts as errors within 15 s"
    sleep 0.1
done
sleep 0.5
kill -0 "$med_a" 2>/dev/null || fail "the mediator exited on a TLS alert"
sent=$(grep -c 'sent ' "$TEST_TMP/alerts.log" || true)
echo "a) $sent fatal alerts sent; the mediator logged them as errors and is still running:"
grep ' error ' "$TEST_TMP/mediator.log" | head -3 | sed 's/^.*error[^:]*: /   /'
if ctl mediators | grep -q '^acme '; then fail "acme is listed while the path is held by the fake"; fi
[[ ! -e "$TEST_TMP/known" ]] || fail "a key was recorded from the fake: $(cat "$TEST_TMP/known")"
lab unintercept 7000
t0=$SECONDS
wait_mediator acme 20
forward_ok || fail "the forward does not work after the fake left"
grep -q "^203.0.113.10:7000 $fp\$" "$TEST_TMP/known" || fail "the real key was not recorded: $(cat "$TEST_TMP/known" 2>&1)"
echo "a) the real server reachable again: acme connected within $((SECONDS - t0)) s; the forward works"

# ------------------------------------------- b) forged REFUSED on first use -
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=fake \
    -keyout "$TEST_TMP/fake.key" -out "$TEST_TMP/fake.crt" 2>/dev/null
cat >"$TEST_TMP/forged.py" <<'EOF'
import socket, ssl, struct, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7444)); s.listen(16)
message = b"wrong proof from mediator 'fresh' (forged by the path)"
payload = struct.pack(">H", 14) + struct.pack(">H", len(message)) + message  # authenticationFailed
frame = struct.pack(">IBB", len(payload), 0x05, 0) + payload  # REFUSED
n = 0
while True:
    c, peer = s.accept()
    n += 1
    try:
        t = ctx.wrap_socket(c, server_side=True)
        t.settimeout(2)
        t.recv(4096)  # HELLO
        t.sendall(frame)
        print(f"connection {n}: forged REFUSED sent", flush=True)
        t.close()
    except (OSError, ssl.SSLError) as e:
        print(f"connection {n}: {e}", flush=True)
        c.close()
EOF
bg gw forged python3 "$TEST_TMP/forged.py" "$TEST_TMP/fake.crt" "$TEST_TMP/fake.key"
wait_listen gw 7444
lab intercept 7000 7444
expect_retrying "forged REFUSED on first use" fresh "forged by the path" \
    "$LAB_TOOL" exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name fresh \
    --secret-file "$TEST_TMP/secret" --known-servers "$TEST_TMP/known-fresh"
[[ ! -e "$TEST_TMP/known-fresh" ]] || fail "the fake's key was recorded: $(cat "$TEST_TMP/known-fresh")"
lab unintercept 7000
wait_mediator fresh 20
grep -q "^203.0.113.10:7000 $fp\$" "$TEST_TMP/known-fresh" || fail "the real key was not recorded: $(cat "$TEST_TMP/known-fresh" 2>&1)"
echo "b) the fake gone: fresh connected and recorded the real key"
kill -TERM -- "-$(last_bg_pid)"

# -------------------------------------------------- c) a second 'acme' -----
forward_ok || fail "the forward does not work before the second acme"
expect_retrying "a second acme with the shared secret" mediator_b "name in use" \
    "$LAB_TOOL" exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/secret" \
    --known-servers "$TEST_TMP/known"
med_b=$(last_bg_pid)
wait_log "$TEST_TMP/server.log" "mediator 'acme' from .* refused: name in use by the live session from" 1
forward_ok || fail "the forward does not work while the second acme is refused"
assert_eq 1 "$(grep -c "mediator 'acme' connected from" "$TEST_TMP/server.log")" "sessions of acme admitted"
if grep -q 'tunnel lost' "$TEST_TMP/mediator.log"; then fail "the first acme lost its session: $(grep 'tunnel lost' "$TEST_TMP/mediator.log")"; fi
# The server decides on the name before WELCOME: the refused one never believed it was connected.
if grep -q 'connected to' "$TEST_TMP/mediator_b.log"; then
    fail "the refused acme logged it was connected: $(grep 'connected to' "$TEST_TMP/mediator_b.log" | head -1)"
fi
echo "c) the second acme refused $(errors mediator_b 'name in use') times; the first keeps its session; the forward works"

# ----------------------------------------- d) the first one stops answering -
kill -STOP -- "-$med_a"
t0=$(date +%s.%N)
wait_log "$TEST_TMP/server.log" "mediator 'acme' disconnected: keepalive timeout: no answer to a liveness probe" 15
wait_log "$TEST_TMP/server.log" "the session waiting for the name replaces it" 1
end=$((SECONDS + 2))
until (($(grep -c "mediator 'acme' connected from" "$TEST_TMP/server.log") >= 2)); do
    ((SECONDS < end)) || fail "the second acme was not admitted after the first one's session ended"
    sleep 0.1
done
secs=$(echo "$(date +%s.%N) - $t0" | bc)
printf 'd) the first acme frozen: the second got in after %.2f s\n' "$secs"
(($(echo "$secs < 12" | bc))) || fail "the second acme took ${secs}s to get in (limit 12 s)"
forward_ok || fail "the forward does not work through the second acme"
kill -CONT -- "-$med_a"
wait_log "$TEST_TMP/mediator.log" "name in use" 15
sleep 2
kill -0 "$med_a" 2>/dev/null || fail "the first acme exited"
kill -0 "$med_b" 2>/dev/null || fail "the second acme exited"
assert_eq 2 "$(grep -c "mediator 'acme' connected from" "$TEST_TMP/server.log")" "sessions of acme admitted (no flapping)"
forward_ok || fail "the forward does not work after the first acme came back"
echo "d) thawed, the first acme is refused in turn: $(errors mediator 'name in use') times; no flapping"
echo "ok: $TEST_NAME"
