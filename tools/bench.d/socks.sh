#!/usr/bin/env bash
# tools/bench.d/socks.sh — Postern's SOCKS5 beside OpenSSH's in the namespace lab, same run.
#
#   POSTERN_BIN=.build/release/postern POSTERN_LAB_PREFIX=bs- bash tools/bench.d/socks.sh [SECONDS]
#
#   (a) ssh -R dynamic  user -> 203.0.113.10:1081 (sshd in wan) -> ssh in lan (SOCKS) -> lanhost
#       (`ssh -R ADDR:PORT` without a target: OpenSSH's SOCKS proxy on the server side, served by
#       the client behind the NAT — the counterpart of Postern's; `ssh -D` needs the reverse
#       direction, which the NAT forbids)
#   (b) Postern         user -> 203.0.113.10:1080 (postern server --socks) -> mediator in lan -> lanhost
#
# Each path, one after the other, through tools/bench.d/rrload.c with RRLOAD_SOCKS (no
# authentication, CONNECT to an IPv4 address): one stream's bulk throughput (drain), 64 B
# request/response latency on one connection (ping, 5,000), new connections/s (rate: 4 threads;
# each connection is a SOCKS handshake + one round trip). Prints the figures and Postern/ssh ratios.
# A benchmark, not a test: figures depend on the machine and its other load.
# shellcheck source=../../Tests/lab/lib.sh
source "$(dirname "$0")/../../Tests/lab/lib.sh"
SECS=${1:-8}
postern_setup

gcc -O2 -pthread -o "$TEST_TMP/rrload" "$LAB_REPO/tools/bench.d/rrload.c"
RR="$TEST_TMP/rrload"
bg lanhost echo "$RR" serve 192.168.77.10 9000 2
bg lanhost blast "$RR" blast 192.168.77.10 9001
wait_listen lanhost 9000 tcp
wait_listen lanhost 9001 tcp

# --- (a) OpenSSH: sshd in wan, ssh in lan dials out and serves SOCKS for wan's port 1081
mkdir -p /run/sshd   # sshd's privilege separation directory (left in place, as tools/bench does)
ssh-keygen -q -t ed25519 -N '' -f "$TEST_TMP/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$TEST_TMP/userkey"
cp "$TEST_TMP/userkey.pub" "$TEST_TMP/authorized_keys"
cat >"$TEST_TMP/sshd_config" <<CFG
ListenAddress 203.0.113.10:22
HostKey $TEST_TMP/hostkey
AuthorizedKeysFile $TEST_TMP/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
GatewayPorts yes
AllowTcpForwarding yes
PidFile none
MaxStartups 100
CFG
bg wan sshd /usr/sbin/sshd -D -e -f "$TEST_TMP/sshd_config"
wait_listen wan 22 tcp
bg lan ssh ssh -N -F none -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    -o ExitOnForwardFailure=yes -i "$TEST_TMP/userkey" -R 0.0.0.0:1081 root@203.0.113.10
wait_listen wan 1081 tcp 20

# --- (b) Postern
start_server server --socks 203.0.113.10:1080=acme --socks-no-auth --log-level warning
start_mediator mediator --log-level warning
wait_mediator acme

measure() { # NAME PORT
    local name=$1 port=$2 out
    out=$(lab exec user env RRLOAD_SOCKS=203.0.113.10:$port "$RR" probe 192.168.77.10 9000 10) || fail "$name: probe: $out"
    out=$(lab exec user env RRLOAD_SOCKS=203.0.113.10:$port "$RR" drain 192.168.77.10 9001 "$SECS")
    eval "${name}_gbit=$(sed -n 's/^gbit_per_s=//p' <<<"$out")"
    out=$(lab exec user env RRLOAD_SOCKS=203.0.113.10:$port "$RR" ping 192.168.77.10 9000 5000)
    eval "${name}_p50=$(sed -n 's/^p50_us=//p' <<<"$out")"
    eval "${name}_p99=$(sed -n 's/^p99_us=//p' <<<"$out")"
    out=$(lab exec user env RRLOAD_SOCKS=203.0.113.10:$port "$RR" rate 192.168.77.10 9000 4 5)
    eval "${name}_cps=$(sed -n 's/^conn_per_s=//p' <<<"$out")"
    eval "${name}_failed=$(sed -n 's/^failed=//p' <<<"$out")"
}
measure ssh 1081
measure postern 1080

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }
printf '%-34s %12s %12s %14s\n' "SOCKS5 through the NAT" "ssh -R" "Postern" "Postern/ssh"
printf '%-34s %12s %12s %14s\n' "one-stream throughput, Gbit/s" "$ssh_gbit" "$postern_gbit" "$(ratio "$postern_gbit" "$ssh_gbit")"
printf '%-34s %12s %12s %14s\n' "64 B RR latency p50, us" "$ssh_p50" "$postern_p50" "$(ratio "$postern_p50" "$ssh_p50")"
printf '%-34s %12s %12s %14s\n' "64 B RR latency p99, us" "$ssh_p99" "$postern_p99" "$(ratio "$postern_p99" "$ssh_p99")"
printf '%-34s %12s %12s %14s\n' "new connections/s (4 threads)" "$ssh_cps" "$postern_cps" "$(ratio "$postern_cps" "$ssh_cps")"
printf '%-34s %12s %12s\n' "failed connections" "$ssh_failed" "$postern_failed"
