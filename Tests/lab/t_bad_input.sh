#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Whatever arrives at the service port, the server refuses it with a reason in
# its log and goes on serving; bad secrets, names, files, specs and configs
# are refused with clear messages.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
postern_setup

# (arrays, not functions: `timeout` runs them)
srv=("$LAB_TOOL" exec wan "$POSTERN_BIN" server)
med=("$LAB_TOOL" exec lan "$POSTERN_BIN" mediator)

# ---------------------------------------------------- startup refusals ------
write_secret "$TEST_TMP/open-secret" "whatever-long-enough-secret"
chmod 666 "$TEST_TMP/open-secret"
expect_exit "secret file mode 666" 2 s666 'secret file .* is writable by everyone' \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin off --secret-file "$TEST_TMP/open-secret"
expect_exit "mediator: secret file mode 666" 2 m666 'secret file .* is writable by everyone' \
    "${med[@]}" --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/open-secret"
# Secrets and admin tokens shorter than 16 bytes fall to a guess: refused, with the length and the reason.
write_secret "$TEST_TMP/short-secret" "short"
expect_exit "a 5-byte secret file" 2 sshort "the secret in $TEST_TMP/short-secret is 5 bytes; at least 16 are needed" \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin off --secret-file "$TEST_TMP/short-secret"
expect_exit "mediator: a 5-byte secret file" 2 mshort "the secret in $TEST_TMP/short-secret is 5 bytes; at least 16 are needed" \
    "${med[@]}" --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/short-secret"
expect_exit "mediator: a 5-byte \$POSTERN_SECRET" 2 mshortenv 'the secret in \$POSTERN_SECRET is 5 bytes; at least 16' \
    "$LAB_TOOL" exec lan env POSTERN_SECRET=short "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme
printf 'acme acme-secret-long-enough\nbeta beta\n' >"$TEST_TMP/short-book"
chmod 600 "$TEST_TMP/short-book"
expect_exit "a 4-byte per-mediator secret" 2 sshortbook "the secret for 'beta' in $TEST_TMP/short-book line 2 is 4 bytes" \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin off --secret-file "$TEST_TMP/short-book"
write_secret "$TEST_TMP/short-token" "tok-12345"
expect_exit "a 9-character admin token" 2 tshort "the admin token in $TEST_TMP/short-token is 9 characters; at least 16" \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin 127.0.0.1:7071 --secret-file "$TEST_TMP/secret" --admin-token-file "$TEST_TMP/short-token"
expect_exit "a 9-character \$POSTERN_ADMIN_TOKEN" 2 tshortenv 'the admin token in \$POSTERN_ADMIN_TOKEN is 9 characters' \
    "$LAB_TOOL" exec wan env POSTERN_ADMIN_TOKEN=tok-12345 "$POSTERN_BIN" server --listen 0.0.0.0:7001 --admin 127.0.0.1:7071 \
    --secret-file "$TEST_TMP/secret"
expect_exit "--insecure with a pin" 2 insecurepin 'cannot be combined with --server-fingerprint' \
    "${med[@]}" --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/secret" --insecure \
    --server-fingerprint "sha256:$(printf '%064d' 0)"
expect_exit "malformed fingerprint" 2 badpin "is not sha256: followed by 64 hex digits" \
    "${med[@]}" --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/secret" --server-fingerprint sha256:abc
printf '203.0.113.10:7000 not-a-key\n' >"$TEST_TMP/known-bad"
expect_exit "malformed known-servers file" 2 badknown "known-bad line 1: expected 'HOST:PORT sha256:HEX'" \
    "${med[@]}" --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/secret" --known-servers "$TEST_TMP/known-bad"
# `postern fingerprint` looks, it does not make a key by accident in the wrong place (another user's or
# a mistyped state directory): it names the directory and refuses unless --create.
expect_exit "fingerprint of a state directory without a key" 1 nokey "no server key in $TEST_TMP/empty-state .*--create" \
    "$POSTERN_BIN" fingerprint --state-dir "$TEST_TMP/empty-state"
[[ ! -e "$TEST_TMP/empty-state/server.key" ]] || fail "postern fingerprint made a key without --create"
"$POSTERN_BIN" fingerprint --create --state-dir "$TEST_TMP/loose" >/dev/null 2>&1
chmod 644 "$TEST_TMP/loose/server.key"
expect_exit "TLS key readable by others" 2 loosekey 'accessible to other users' \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin off --secret-file "$TEST_TMP/secret" --state-dir "$TEST_TMP/loose"
expect_exit "bad forward spec" 2 badspec "invalid forward 'tcp:0.0.0.0:8080=192.168.77.10:80'" \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin off --secret-file "$TEST_TMP/secret" --forward tcp:0.0.0.0:8080=192.168.77.10:80
expect_exit "bad forward spec (transport)" 2 badspec2 "invalid forward 'sctp:.*must start with tcp: or udp:" \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin off --secret-file "$TEST_TMP/secret" --forward sctp:1=acme/192.168.77.10:80

cat >"$TEST_TMP/unknown-key.toml" <<EOF2
[server]
listen = "0.0.0.0:7001"
secret-file = "$TEST_TMP/secret"
admin = "off"
fowards = ["tcp:0.0.0.0:8080=acme/192.168.77.10:80"]
EOF2
expect_exit "config with an unknown key" 2 badkey "unknown key 'fowards' in \[server\]" \
    "${srv[@]}" --config "$TEST_TMP/unknown-key.toml"
printf '[server\nlisten = "0.0.0.0:7001"\n' >"$TEST_TMP/invalid.toml"
expect_exit "config that is not TOML" 2 badtoml "is not valid TOML" "${srv[@]}" --config "$TEST_TMP/invalid.toml"
printf '[server]\nlisten = 7001\n' >"$TEST_TMP/badtype.toml"
expect_exit "config with a wrong type" 2 badtype "listen must be a string" "${srv[@]}" --config "$TEST_TMP/badtype.toml"

# A forward on a port something else holds: startup fails, naming the port.
bg wan squatter socat TCP-LISTEN:8090,reuseaddr,fork EXEC:cat
wait_listen wan 8090
expect_exit "forward on a busy port" 1 busy 'cannot listen on 0\.0\.0\.0:8090: Address already in use' \
    "${srv[@]}" --listen 0.0.0.0:7001 --admin off --secret-file "$TEST_TMP/secret" --forward tcp:0.0.0.0:8090=acme/192.168.77.10:80
# ...and it did not leave anything listening behind.
if lab exec wan ss -Htln "sport = :7001" | grep -q .; then fail "the failed server left port 7001 listening"; fi

# --------------------------------------------------- junk on the wire ------
bg lanhost web socat TCP-LISTEN:80,bind=192.168.77.10,reuseaddr,fork SYSTEM:'echo lan web'
wait_listen lanhost 80
start_server server --keepalive 1 --dead-timeout 3 --forward tcp:0.0.0.0:8080=acme/192.168.77.10:80
refusals() { grep -c 'refused connection from 203\.0\.113\.20' "$TEST_TMP/server.log" || true; }

head -c 4096 /dev/urandom | lab exec user socat -T2 - TCP:203.0.113.10:7000 >/dev/null 2>&1 || true
wait_log "$TEST_TMP/server.log" 'refused connection from 203\.0\.113\.20' 5
assert_eq 1 "$(refusals)" "refusals after random bytes"
grep 'refused connection from 203\.0\.113\.20' "$TEST_TMP/server.log" | tail -1

printf 'GET / HTTP/1.1\r\nHost: 203.0.113.10\r\n\r\n' | lab exec user socat -T2 - TCP:203.0.113.10:7000 >/dev/null 2>&1 || true
end=$((SECONDS + 5)); until (($(refusals) >= 2)); do ((SECONDS < end)) || fail "no refusal logged for an HTTP request"; sleep 0.1; done
grep 'refused connection from 203\.0\.113\.20' "$TEST_TMP/server.log" | tail -1

lab exec user socat -u /dev/null TCP:203.0.113.10:7000 || true
end=$((SECONDS + 5)); until (($(refusals) >= 3)); do ((SECONDS < end)) || fail "no refusal logged for an empty connection"; sleep 0.1; done
grep 'refused connection from 203\.0\.113\.20' "$TEST_TMP/server.log" | tail -1

# A connection that says nothing at all is dropped after the handshake timeout
# (10 s); not waited for here, but it must not block others meanwhile.
bg user silent socat -u TCP:203.0.113.10:7000 /dev/null

# Still serving: a real mediator connects and the forward works.
start_mediator mediator
wait_mediator acme
assert_contains "$(lab exec user socat -T3 - TCP:203.0.113.10:8080 </dev/null)" "lan web" "forward after the junk"
grep -Eq 'Fatal error|Assertion|Segmentation' "$TEST_TMP/server.log" && fail "the server crashed"

# ----------------------------------------------------------- wrong secret ------
write_secret "$TEST_TMP/wrong" "not-the-secret-at-all"
# A REFUSED in the handshake is not authenticated (anyone on the path could send it): the mediator
# logs it as an error and keeps retrying instead of exiting.
expect_retrying "mediator with a wrong secret" wrongsecret 'refused' \
    "${med[@]}" --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/wrong"
kill -TERM -- "-$(last_bg_pid)"
grep -q "wrong proof from mediator 'acme': a wrong secret" "$TEST_TMP/wrongsecret.log" || fail "the mediator log does not say why: $(cat "$TEST_TMP/wrongsecret.log")"
wait_log "$TEST_TMP/server.log" "wrong proof from mediator 'acme': a wrong secret" 3
grep "wrong secret" "$TEST_TMP/server.log" | tail -1
# The genuine acme was not disturbed by the impostor.
wait_mediator acme 1
assert_contains "$(lab exec user socat -T3 - TCP:203.0.113.10:8080 </dev/null)" "lan web" "forward after the impostor"

# ------------------------------------------- per-mediator secrets, unknown name ------
printf '# name secret\nacme acme-secret-long-enough\nbeta beta-secret-long-enough\n' >"$TEST_TMP/book"
chmod 600 "$TEST_TMP/book"
bg wan server_book "$POSTERN_BIN" server --listen 0.0.0.0:7001 --admin 127.0.0.1:7071 --secret-file "$TEST_TMP/book"
wait_listen wan 7001
write_secret "$TEST_TMP/beta" "beta-secret-long-enough"
expect_retrying "unknown mediator name" ghost 'refused' \
    "${med[@]}" --server 203.0.113.10:7001 --name ghost --secret-file "$TEST_TMP/beta"
kill -TERM -- "-$(last_bg_pid)"
grep -q "no mediator named 'ghost'" "$TEST_TMP/ghost.log" || fail "mediator log does not name the reason: $(cat "$TEST_TMP/ghost.log")"
wait_log "$TEST_TMP/server_book.log" "no mediator named 'ghost'" 3
# beta's secret is not acme's.
expect_retrying "acme with beta's secret" crossed "wrong proof from mediator 'acme'" \
    "${med[@]}" --server 203.0.113.10:7001 --name acme --secret-file "$TEST_TMP/beta"
kill -TERM -- "-$(last_bg_pid)"
# and beta with its own secret is welcome.
bg lan beta "$POSTERN_BIN" mediator --server 203.0.113.10:7001 --name beta --secret-file "$TEST_TMP/beta"
wait_log "$TEST_TMP/server_book.log" "mediator 'beta' connected" 5

# The silent connection from before is dropped by the handshake timeout.
wait_log "$TEST_TMP/server.log" 'refused connection from 203\.0\.113\.20:[0-9]+: timed out: no complete handshake within 10 s' 12

# No secret ever reaches a log.
if grep -E 'lab-secret|acme-secret|beta-secret|not-the-secret' "$TEST_TMP"/*.log; then fail "a secret was logged"; fi
echo "ok: $TEST_NAME"
