#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# What a stranger gets wrong on the command line gets one clear line and a meaningful exit status
# (found by the CLI audit): an unprivileged server without a writable home (2, naming the state
# directory and --state-dir, not an NSError dump), a secret file that is a directory (2, saying so),
# a mediator name no mediator can have in ctl (64, before any request), ctl without a server (1).
# No lab: each command runs in a network namespace of its own (unshare -n), so nothing leaves it.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
find_postern
command -v setpriv >/dev/null || fail "setpriv is not installed (util-linux)"
iso=(unshare -n)

write_secret "$TEST_TMP/secret" "cli-errors-secret-$RANDOM-$RANDOM"
expect_exit "unprivileged server without a writable home" 2 nohome \
    '^[^{]*cannot create the state directory /nonexistent/\.local/state/postern: /nonexistent: Permission denied; choose one with --state-dir' \
    "${iso[@]}" setpriv --reuid=nobody --regid=nogroup --clear-groups env -u POSTERN_STATE_DIR -u XDG_STATE_HOME HOME=/nonexistent \
    POSTERN_SECRET="$(cat "$TEST_TMP/secret")" "$POSTERN_BIN" server --listen 127.0.0.1:7000
if grep -q NSCocoaErrorDomain "$TEST_TMP/nohome.log"; then fail "the refusal is an NSError dump: $(cat "$TEST_TMP/nohome.log")"; fi
mkdir -p "$TEST_TMP/secret-dir"
expect_exit "secret file that is a directory" 2 secretdir "cannot read secret file $TEST_TMP/secret-dir: it is a directory" \
    "${iso[@]}" "$POSTERN_BIN" server --listen 127.0.0.1:7000 --admin off --secret-file "$TEST_TMP/secret-dir"
if grep -q "readable by other users" "$TEST_TMP/secretdir.log"; then fail "a directory was judged by its mode"; fi
for name in 'acme?x=1' '' 'a b'; do
    expect_exit "ctl ports '$name'" 64 "badname" "' is not a mediator name: names are 1-64" \
        "${iso[@]}" "$POSTERN_BIN" ctl --token-file "$TEST_TMP/secret" ports "$name"
done
expect_exit "ctl without a server" 1 noserver 'cannot reach the admin API at 127\.0\.0\.1:7070: .*is the server running' \
    "${iso[@]}" sh -c 'ip link set lo up && exec "$@"' _ "$POSTERN_BIN" ctl --token-file "$TEST_TMP/secret" mediators
expect_exit "replay without a responder" 2 noresponder \
    "cannot reach the responder's control address 127\.0\.0\.1:7001: Connection refused$" \
    "${iso[@]}" sh -c 'ip link set lo up && exec "$@"' _ "$POSTERN_BIN" replay "$LAB_REPO/captures/third-party/http-get.pcap" \
    --to 127.0.0.1:7000 --quiet
# TUN-mode replay with nothing the plan can inject (its one TCP conversation has segments beyond the
# MTU): the reason, exit 2, before any socket opens (it said "sent 0 packets" and exited 0).
expect_exit "replay --packets --inject with nothing to inject" 2 nothingtoinject \
    "sent 0 packets from the initiator: every conversation is skipped: conversation 1 \(tcp .*\): packet [0-9]+ of [0-9]+ bytes is larger than the tunnel's MTU of 1400$" \
    "${iso[@]}" "$POSTERN_BIN" replay "$LAB_REPO/captures/http-curl.pcap" --packets initiator --inject \
    --rewrite INITIATOR=192.168.77.50,RESPONDER=192.168.77.10
echo "ok: each mistake got one clear line and its exit status"
