#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The systemd units (dist/systemd) as tools/install installs them (issue 14). No namespaces: this
# machine has no systemd running, so the units are checked rather than started:
#  - tools/install --root puts the binary, both units and a starting server.toml in place, and never
#    overwrites an existing server.toml;
#  - it installs the bash completion, which mentions every subcommand --help lists (two levels);
#  - systemd-analyze verify accepts both units (and the TUN drop-in) without a single complaint;
#  - every option the units pass exists in that subcommand's --help, and the binary accepts the
#    units' command lines up to the point where it needs the missing secret and config;
#  - RestartPreventExitStatus matches the exit codes: a configuration error exits 2 (server and
#    mediator), and the mediator's unit does not restart a mediator refused for good (exit 1);
#  - the server's unit grants only CAP_NET_BIND_SERVICE; the mediator's only gets CAP_NET_ADMIN and
#    CAP_NET_RAW from the drop-in.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
find_postern
command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (apt-get install systemd)"

root="$TEST_TMP/root"
"$LAB_REPO/tools/install" --root "$root" --bin "$POSTERN_BIN" --mediator-tun >"$TEST_TMP/install.log" \
    || fail "tools/install failed: $(cat "$TEST_TMP/install.log")"
units="$root/etc/systemd/system"
for f in "$units/postern-server.service" "$units/postern-mediator@.service" "$units/postern-mediator@.service.d/tun.conf" \
    "$root/etc/postern/server.toml" "$root/usr/local/bin/postern" "$root/usr/local/share/bash-completion/completions/postern"; do
    [[ -s $f ]] || fail "tools/install did not install $f"
done
# The bash completion it installed knows every subcommand the binary's --help lists, one level down too.
completion="$root/usr/local/share/bash-completion/completions/postern"
bash -n "$completion" || fail "the installed bash completion is not valid bash"
subcommands() { "$POSTERN_BIN" "$@" --help | awk '/^SUBCOMMANDS:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }'; }
top=$(subcommands)
[[ -n $top ]] || fail "postern --help lists no subcommands"
# Each (sub)command is a word the completion offers and has its own completion function.
for sub in $top; do
    grep -qw -- "$sub" "$completion" || fail "the bash completion does not mention 'postern $sub'"
    grep -q "^_postern_${sub}()" "$completion" || fail "the bash completion has no function for 'postern $sub'"
    for subsub in $(subcommands "$sub"); do
        grep -qw -- "$subsub" "$completion" || fail "the bash completion does not mention 'postern $sub $subsub'"
        grep -q "^_postern_${sub}_${subsub}()" "$completion" || fail "the bash completion has no function for 'postern $sub $subsub'"
    done
done
# And it runs: after 'postern ctl ' it offers ctl's subcommands (bash-completion turns extglob on).
# shellcheck disable=SC2016 # for the inner bash
words=$(bash -c 'shopt -s extglob; source "$1"; COMP_WORDS=(postern ctl ""); COMP_CWORD=2; COMP_LINE="postern ctl "
    COMP_POINT=${#COMP_LINE}; _postern; echo " ${COMPREPLY[*]} "' _ "$completion" 2>&1) || fail "the completion function failed: $words"
for sub in $(subcommands ctl); do assert_contains "$words" " $sub " "bash completion after 'postern ctl '"; done
[[ $words != *" server "* ]] || fail "bash completion after 'postern ctl ' offers the top level: $words"
echo "bash completion installed; it mentions every subcommand ($(echo $top | wc -w) at the top)"
echo "# edited" >>"$root/etc/postern/server.toml"
"$LAB_REPO/tools/install" --root "$root" --bin "$POSTERN_BIN" >/dev/null
grep -q "^# edited" "$root/etc/postern/server.toml" || fail "a second install overwrote /etc/postern/server.toml"

# verify needs ExecStart's binary to exist: point copies of the units at the one under test.
mkdir -p "$TEST_TMP/verify/postern-mediator@acme.service.d"
for unit in postern-server.service postern-mediator@.service; do
    sed "s|/usr/local/bin/postern|$POSTERN_BIN|" "$units/$unit" >"$TEST_TMP/verify/$unit"
done
cp "$TEST_TMP/verify/postern-mediator@.service" "$TEST_TMP/verify/postern-mediator@acme.service"
out=$(cd "$TEST_TMP/verify" && systemd-analyze verify ./postern-server.service ./postern-mediator@acme.service 2>&1) \
    || fail "systemd-analyze verify failed: $out"
[[ -z $out ]] || fail "systemd-analyze verify complained: $out"
# The drop-in on its own, as a unit of its own ([Service] keys only).
{ printf '[Service]\nExecStart=%s mediator --help\n' "$POSTERN_BIN"; grep -v '^\[Service\]' "$LAB_REPO/dist/systemd/mediator-tun.conf"; } \
    >"$TEST_TMP/verify/tun-check.service"
out=$(cd "$TEST_TMP/verify" && systemd-analyze verify ./tun-check.service 2>&1) || fail "the TUN drop-in does not verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify complained about the TUN drop-in: $out"
echo "systemd-analyze verify: both units and the TUN drop-in are clean"
systemd-analyze security --offline=yes "$TEST_TMP/verify/postern-server.service" 2>/dev/null | tail -1 || true
systemd-analyze security --offline=yes "$TEST_TMP/verify/postern-mediator@acme.service" 2>/dev/null | tail -1 || true

# Every --option of each ExecStart exists in that subcommand's help.
for unit in postern-server.service postern-mediator@.service; do
    line=$(grep '^ExecStart=' "$units/$unit")
    sub=$(echo "$line" | awk '{ print $2 }')
    help=$("$POSTERN_BIN" "$sub" --help)
    for opt in $(echo "$line" | grep -oE -- '--[a-z-]+'); do
        grep -q -- "$opt" <<<"$help" || fail "$unit passes $opt, which 'postern $sub' does not have"
    done
    echo "$unit: $(echo "$line" | grep -oE -- '--[a-z-]+' | tr '\n' ' ')all known to postern $sub"
done

# Exit codes against RestartPreventExitStatus. A unit's command line with its config missing is a
# configuration error: exit 2, which neither unit restarts.
expect_exit "server, config missing" 2 srv-config "config|no such file|cannot" \
    "$POSTERN_BIN" server --config "$TEST_TMP/none.toml" --secret-file "$TEST_TMP/none.secret" --state-dir "$TEST_TMP/s" --log-format json
expect_exit "mediator, config missing" 2 med-config "config|no such file|cannot" \
    "$POSTERN_BIN" mediator --config "$TEST_TMP/none.toml" --name acme --secret-file "$TEST_TMP/none.secret" --state-dir "$TEST_TMP/m"
grep -qx 'RestartPreventExitStatus=2' "$units/postern-server.service" || fail "the server unit must not restart on exit 2"
grep -qx 'RestartPreventExitStatus=1 2' "$units/postern-mediator@.service" || fail "the mediator unit must not restart on exits 1 and 2"
grep -qx 'Restart=on-failure' "$units/postern-server.service" || fail "the server unit must restart on failure"
grep -qx 'Restart=on-failure' "$units/postern-mediator@.service" || fail "the mediator unit must restart on failure"
# Exit 1 of a mediator is only the final refusal (ReconnectRule.stop); the source says so.
grep -q 'throw ExitCode(1)' "$LAB_REPO/Sources/postern/MediatorCommand.swift" || fail "the mediator no longer exits 1: update the unit"

# Readiness and reload: the binary speaks sd_notify (t_reload checks READY=1 and RELOADING=1).
for unit in postern-server.service postern-mediator@.service; do
    grep -qx 'Type=notify' "$units/$unit" || fail "$unit is not Type=notify"
done
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$units/postern-server.service" || fail "systemctl reload does not send SIGHUP"

# Least capabilities.
assert_eq "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" "$(grep '^CapabilityBoundingSet=' "$units/postern-server.service")" \
    "server capabilities"
assert_eq "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" "$(grep '^CapabilityBoundingSet=' "$units/postern-mediator@.service")" \
    "mediator capabilities without the drop-in"
grep -q '^AmbientCapabilities=.*CAP_NET_ADMIN.*CAP_NET_RAW' "$units/postern-mediator@.service.d/tun.conf" \
    || fail "the TUN drop-in does not grant CAP_NET_ADMIN and CAP_NET_RAW"
for unit in postern-server.service postern-mediator@.service; do
    for key in ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes PrivateTmp=yes DynamicUser=yes; do
        grep -qx "$key" "$units/$unit" || fail "$unit lacks $key"
    done
done
echo "ok: $TEST_NAME"
