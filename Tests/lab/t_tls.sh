#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The tunnel is TLS 1.3 and the mediator pins the server's key:
#   - the server makes its key on first start and prints the fingerprint that
#     `postern fingerprint` also prints; the key file is mode 600;
#   - tcpdump on the gateway during a 1.6 MB transfer of a known text finds none
#     of it on the wire (and, as a control, finds it with --insecure);
#   - a mediator pinned to another key refuses to connect, says so as an error,
#     and keeps retrying (nothing unauthenticated may stop it);
#   - a TLS interceptor on the gateway (socat with its own certificate) is
#     detected: by the recorded key (trust on first use), by --server-fingerprint,
#     and even by a mediator that has recorded nothing yet (the proofs are bound
#     to the key the mediator saw), and nothing is recorded then; each mediator
#     keeps retrying and connects once the interceptor is gone;
#   - certificates from a CA work, with mutual TLS: a mediator without a client
#     certificate, trusting another CA, or using a name its certificate is not for,
#     is refused with a reason, logs it as an error and keeps retrying.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# Fixed width: the file (and so the capture checked below) must not shrink with a short $RANDOM.
marker="POSTERN-PLAINTEXT-MARKER-$(printf '%05d%05d' "$RANDOM" "$RANDOM")"
mkdir -p "$TEST_TMP/www"
python3 -c "import sys; sys.stdout.write(('$marker ' * 50000))" >"$TEST_TMP/www/marker.txt"
want=$(sha256sum <"$TEST_TMP/www/marker.txt" | cut -d' ' -f1)
bg lanhost web python3 -m http.server 80 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_listen lanhost 80

med=("$LAB_TOOL" exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --secret-file "$TEST_TMP/secret")

# capture NAME PORT — tcpdump on gw's public side, in the background; stop_capture ends it.
capture() {
    bg gw "cap_$1" tcpdump -i br-wan -U -n -w "$TEST_TMP/$1.pcap" tcp port "$2"
    cap_pid=$(last_bg_pid)
    wait_log "$TEST_TMP/cap_$1.log" 'listening on'
}
stop_capture() {
    kill -INT -- "-$cap_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$cap_pid" 2>/dev/null || break; sleep 0.1; done
}
fetch() { lab exec user curl -sS --max-time 10 "http://203.0.113.10:$1/marker.txt" | sha256sum | cut -d' ' -f1; }

# ----------------------------------------------- generated key, fingerprint -
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80
wait_log "$TEST_TMP/server.log" 'TLS key fingerprint: sha256:[0-9a-f]{64}'
fp=$(grep -Eo 'sha256:[0-9a-f]{64}' "$TEST_TMP/server.log" | head -1)
assert_eq "$fp" "$(lab exec wan "$POSTERN_BIN" fingerprint --state-dir "$POSTERN_STATE_DIR")" "postern fingerprint"
assert_eq 600 "$(stat -c %a "$POSTERN_STATE_DIR/server.key")" "mode of the generated key"
echo "server key $fp"

# ------------------------------------------- pinned mediator, no plaintext --
capture tls 7000
start_mediator mediator --server-fingerprint "$fp"
wait_mediator acme
assert_eq "$want" "$(fetch 8080)" "transfer through the TLS tunnel"
stop_capture
size=$(stat -c %s "$TEST_TMP/tls.pcap")
((size > 1500000)) || fail "the capture holds only $size bytes: the transfer did not cross the tunnel"
hits=$(grep -a -c "$marker" "$TEST_TMP/tls.pcap" || true)
assert_eq 0 "$hits" "packets of the TLS tunnel carrying the known text"
echo "tcpdump on gw: $size bytes of tunnel, 0 with the plaintext"

# ---------------------------------------------------- pinned to another key -
other=sha256:$(printf '%064d' 0)
expect_retrying "mediator pinned to another key" wrongpin \
    "REFUSING the server at 203.0.113.10:7000: it presented TLS key $fp, but $other is pinned" \
    "${med[@]}" --name wrongpin --server-fingerprint "$other"
if ctl mediators | grep -q '^wrongpin '; then fail "a mediator with the wrong pin got in"; fi
# It never got as far as the secret challenge: the server saw no HELLO, let alone a proof, from it.
if grep -q "wrongpin" "$TEST_TMP/server.log"; then fail "the server heard from the wrongly pinned mediator"; fi
kill -TERM -- "-$(last_bg_pid)"

# Trust on first use: record the real key while the path is clean.
bg lan tofu_clean "${med[@]}" --name tofu --known-servers "$TEST_TMP/known"
tofu_pid=$(last_bg_pid)
wait_mediator tofu
grep -q "^203.0.113.10:7000 $fp\$" "$TEST_TMP/known" || fail "the key was not recorded: $(cat "$TEST_TMP/known" 2>&1)"
kill -TERM -- "-$tofu_pid"

# ------------------------------------------------ interceptor on the gateway -
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=mitm \
    -keyout "$TEST_TMP/mitm.key" -out "$TEST_TMP/mitm.crt" 2>/dev/null
cat "$TEST_TMP/mitm.crt" "$TEST_TMP/mitm.key" >"$TEST_TMP/mitm.pem"
bg gw mitm socat -d -d "OPENSSL-LISTEN:7443,reuseaddr,fork,cert=$TEST_TMP/mitm.pem,verify=0" \
    "OPENSSL:203.0.113.10:7000,verify=0"
wait_listen gw 7443
lab intercept 7000 7443

expect_retrying "recorded key vs interceptor" tofu_mitm "REFUSING the server at 203.0.113.10:7000" \
    "${med[@]}" --name tofu --known-servers "$TEST_TMP/known"

expect_retrying "--server-fingerprint vs interceptor" pin_mitm "REFUSING the server at 203.0.113.10:7000" \
    "${med[@]}" --name pinned --server-fingerprint "$fp"

expect_retrying "first use through the interceptor" fresh_mitm "TLS interceptor" \
    "${med[@]}" --name fresh --known-servers "$TEST_TMP/known-fresh"
grep -q "wrong proof from mediator 'fresh'" "$TEST_TMP/server.log" || fail "the server did not report the bad proof"
[[ ! -e "$TEST_TMP/known-fresh" ]] || fail "the interceptor's key was recorded: $(cat "$TEST_TMP/known-fresh")"
accepted=$(grep -c 'accepting connection' "$TEST_TMP/mitm.log" || true)
((accepted >= 6)) || fail "the interceptor saw $accepted connections, expected at least 6 (two per mediator)"
if ctl mediators | grep -Eq '^(tofu|pinned|fresh) '; then fail "a mediator got in through the interceptor"; fi
echo "interceptor: detected by the recorded key, by the pin, and on first use ($accepted connections)"
# The path is clean again: all three, still running, connect by themselves; the fresh one records the
# real key now.
lab unintercept 7000
for name in tofu pinned fresh; do wait_mediator "$name" 20; done
grep -q "^203.0.113.10:7000 $fp\$" "$TEST_TMP/known-fresh" || fail "the real key was not recorded: $(cat "$TEST_TMP/known-fresh" 2>&1)"
echo "interceptor gone: tofu, pinned and fresh connected by themselves"

# ------------------------------------------------------- CA and mutual TLS --
pki=$TEST_TMP/pki
mkdir -p "$pki"
mkca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$1" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        -keyout "$pki/$1.key" -out "$pki/$1.crt" 2>/dev/null
}
mkleaf() { # NAME CA EXT
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$1" \
        -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$pki/$1.ext"
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$2.crt" -CAkey "$pki/$2.key" -CAcreateserial -days 1 \
        -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
    chmod 600 "$pki/$1.key"
}
mkca ca
mkca otherca
mkleaf server ca "subjectAltName=IP:203.0.113.10
extendedKeyUsage=serverAuth"
mkleaf camed ca "extendedKeyUsage=clientAuth"

bg wan server_ca "$POSTERN_BIN" server --listen 0.0.0.0:7001 --admin 127.0.0.1:7071 \
    --secret-file "$TEST_TMP/secret" --tls-cert "$pki/server.crt" --tls-key "$pki/server.key" \
    --mediator-ca "$pki/ca.crt" --forward tcp:0.0.0.0:8081=camed/192.168.77.10:80
wait_listen wan 7001
ca_med=("$LAB_TOOL" exec lan "$POSTERN_BIN" mediator --server 203.0.113.10:7001 --secret-file "$TEST_TMP/secret")
bg lan camed "${ca_med[@]}" --name camed --ca-file "$pki/ca.crt" --tls-cert "$pki/camed.crt" --tls-key "$pki/camed.key"
wait_mediator camed 10 http://127.0.0.1:7071
assert_eq "$want" "$(fetch 8081)" "transfer with CA certificates and mutual TLS"

expect_retrying "no client certificate" nocert "requires a mediator certificate" \
    "${ca_med[@]}" --name nocert --ca-file "$pki/ca.crt"
kill -TERM -- "-$(last_bg_pid)"
expect_retrying "trusting another CA" wrongca "does not chain to the trusted CA" \
    "${ca_med[@]}" --name wrongca --ca-file "$pki/otherca.crt" --tls-cert "$pki/camed.crt" --tls-key "$pki/camed.key"
kill -TERM -- "-$(last_bg_pid)"
expect_retrying "another mediator's certificate" wrongname "the TLS client certificate is for camed, not for mediator 'impostor'" \
    "${ca_med[@]}" --name impostor --ca-file "$pki/ca.crt" --tls-cert "$pki/camed.crt" --tls-key "$pki/camed.key"
kill -TERM -- "-$(last_bg_pid)"
if ctl --admin http://127.0.0.1:7071 mediators | grep -Eq '^(nocert|wrongca|impostor) '; then fail "a refused mediator got in"; fi
echo "CA: verified server certificate with mutual TLS; no client certificate, a foreign CA and another name refused"

# ------------------------------------------- control: --insecure is readable -
bg wan server_plain "$POSTERN_BIN" server --insecure --listen 0.0.0.0:7002 --admin 127.0.0.1:7072 \
    --secret-file "$TEST_TMP/secret" --forward tcp:0.0.0.0:8082=plain/192.168.77.10:80
wait_listen wan 7002
capture plain 7002
bg lan plain "$POSTERN_BIN" mediator --insecure --server 203.0.113.10:7002 --name plain --secret-file "$TEST_TMP/secret"
wait_mediator plain 10 http://127.0.0.1:7072
assert_eq "$want" "$(fetch 8082)" "transfer through the --insecure tunnel"
stop_capture
hits=$(grep -a -c "$marker" "$TEST_TMP/plain.pcap" || true)
((hits > 0)) || fail "control: the known text was not found in the --insecure capture, so the check above proves nothing"
grep -q -- "--insecure" "$TEST_TMP/plain.log" || fail "the --insecure mediator did not warn"
echo "control: --insecure capture holds the text in $hits packets"
echo "ok: $TEST_NAME"
