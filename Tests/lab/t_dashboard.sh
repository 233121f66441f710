#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Dashboard (issue 14): the admin API's web page, rendered by a real headless browser (Debian's
# chromium, --dump-dom after its script ran) in the server's namespace, against a running server
# with its mediator and a forward tcp:0.0.0.0:8080=acme/192.168.77.10:9000 (a web server on lanhost).
#  - without a token the page loads but asks for one and shows no data;
#  - with a wrong token it asks again (the API refused it);
#  - with the token it lists acme (connected) and the forward (listening);
#  - the mediator's host name, set to a <script> element in its own UTS namespace, shows as text
#    (escaped in the DOM, no script element made, the title unchanged);
#  - the page's traffic figure rises while a paced curl download runs through the forward, and
#    once it finished the forward shows at least the file's size from the mediator.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
command -v chromium >/dev/null || fail "chromium is not installed (run bash tools/setup)"
postern_setup

size=$((96 * 1024 * 1024))  # 32 s at 3 MiB/s: room for two renders while it runs
mkdir -p "$TEST_TMP/www"
truncate -s "$size" "$TEST_TMP/www/big"
bg lanhost web python3 -m http.server 9000 --bind 192.168.77.10 --directory "$TEST_TMP/www"
wait_listen lanhost 9000
forward="tcp:0.0.0.0:8080=acme/192.168.77.10:9000"
start_server server --forward "$forward"

# The mediator in a UTS namespace of its own, whose host name is markup: the name reaches the
# page through /v1/mediators exactly as the mediator sent it.
hostile='<script>document.title="pwned"</script>'
# shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
bg lan mediator unshare --uts sh -c 'printf %s "$1" >/proc/sys/kernel/hostname && shift && exec "$@"' _ "$hostile" \
    "$POSTERN_BIN" mediator --server 203.0.113.10:7000 --name acme --secret-file "$TEST_TMP/secret"
wait_mediator acme 20
token=$(cat "$POSTERN_STATE_DIR/admin.token")

# render NAME URL: the DOM chromium built from URL after its script ran (2.5 s of the page's time,
# which stops while requests are in flight), in $TEST_TMP/NAME.html. Each run has a throwaway
# profile and its own process group, killed afterwards (and by the cleanup if the test fails).
render() {
    local name=$1 url=$2 pid
    setsid "$LAB_TOOL" exec wan timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --no-first-run --no-default-browser-check --disable-extensions --disable-background-networking \
        --user-data-dir="$TEST_TMP/chrome-$name" --virtual-time-budget=2500 --dump-dom "$url" \
        >"$TEST_TMP/$name.html" 2>"$TEST_TMP/chrome-$name.out" </dev/null &
    pid=$!
    _LAB_PIDS+=("$pid")
    wait "$pid" || fail "chromium ($name) failed: $(tail -5 "$TEST_TMP/chrome-$name.out")"
    kill -KILL -- "-$pid" 2>/dev/null || true
    grep -q "</html>" "$TEST_TMP/$name.html" || fail "chromium ($name) dumped no page"
}

# page NAME QUERY...: facts read from a rendered page (python's HTML parser, not the JSON).
page() {
    python3 - "$TEST_TMP/$1.html" "${@:2}" <<'PY'
import sys
from html.parser import HTMLParser

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.rows, self.row, self.scripts, self.hidden = {}, {}, None, 0, set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if "id" in a:
            self.ids[a["id"]] = a
            if "hidden" in a:
                self.hidden.add(a["id"])
        if tag == "tr" and ("data-forward" in a or "data-mediator" in a):
            self.row = {"attrs": a, "cells": []}
            self.rows[a.get("data-forward") or a.get("data-mediator")] = self.row
        elif tag == "td" and self.row is not None:
            self.row["cells"].append({"attrs": a, "text": ""})
    def handle_endtag(self, tag):
        if tag == "tr":
            self.row = None
    def handle_data(self, data):
        if self.row is not None and self.row["cells"]:
            self.row["cells"][-1]["text"] += data

p = Page()
p.feed(open(sys.argv[1]).read())
for q in sys.argv[2:]:
    kind, _, arg = q.partition(":")
    if kind == "scripts":
        print(p.scripts)
    elif kind == "hidden":
        print("hidden" if arg in p.hidden else "shown")
    elif kind == "bytes":  # an element's data-bytes
        print(p.ids[arg]["data-bytes"])
    elif kind == "row":  # a table row's cells as text, tab-separated
        print("\t".join(c["text"] for c in p.rows[arg]["cells"]) if arg in p.rows else "-")
    elif kind == "rowbytes":  # the data-bytes of a row's byte cells, summed
        print(sum(int(c["attrs"]["data-bytes"]) for c in p.rows[arg]["cells"] if "data-bytes" in c["attrs"]))
PY
}

dashboard=http://127.0.0.1:7070/dashboard

# 1. No token: the page asks for one and shows nothing of the server.
render anonymous "$dashboard"
assert_eq "shown hidden" "$(page anonymous hidden:login hidden:main | tr '\n' ' ' | sed 's/ $//')" "without a token: login shown, data hidden"
assert_eq "-" "$(page anonymous row:acme)" "without a token no mediator is listed"
grep -q "an admin token is needed" "$TEST_TMP/anonymous.html" || fail "the page does not ask for the token"
echo "without a token: the page asks for it and lists nothing"

# 2. A wrong token: refused by the API, the page asks again.
render wrong "$dashboard#token=wrong-token-wrong-token-wrong-token"
assert_eq "shown" "$(page wrong hidden:login)" "with a wrong token the login is shown again"
grep -q "the admin API refused the token" "$TEST_TMP/wrong.html" || fail "the page does not say the token was refused"
echo "with a wrong token: the page says the API refused it"

# 3. The token: the mediator and the forward are listed; the hostile host name is only text.
render idle "$dashboard#token=$token"
assert_eq "shown" "$(page idle hidden:main)" "with the token the data is shown"
row=$(page idle row:acme)
echo "mediator row: $row"
[[ "$row" == acme$'\t'connected$'\t'* ]] || fail "acme is not listed as connected: $row"
assert_contains "$row" "$hostile" "the host name shows as the mediator sent it"
row=$(page idle "row:$forward")
echo "forward row: $row"
[[ "$row" == "$forward"$'\t'listening$'\t'* ]] || fail "the forward is not listed as listening: $row"
assert_eq 1 "$(page idle scripts)" "only the page's own script element"
grep -qF '&lt;script&gt;document.title="pwned"&lt;/script&gt;' "$TEST_TMP/idle.html" || fail "the host name is not escaped text"
grep -qF '<title>Postern</title>' "$TEST_TMP/idle.html" || fail "the host name's script ran (the title changed)"
echo "with the token: acme and the forward listed; the <script> host name is shown as text"

# 4. A paced download through the forward: the page's traffic figure rises while it runs.
bg user download curl -sS --limit-rate 3M -o /dev/null -w '%{size_download}\n' "http://203.0.113.10:8080/big"
download=$(last_bg_pid)
end=$((SECONDS + 30))
first=0
until ((first > 0)); do
    ((SECONDS < end)) || fail "the traffic figure stayed 0 while the download ran"
    render during1 "$dashboard#token=$token"
    first=$(page during1 bytes:traffic-total)
done
# Later looks, until one shows more (a paced download may pause for a moment under load); each
# must still come while the download runs, or the test could not tell a live figure.
second=$first
until ((second > first)); do
    kill -0 "$download" 2>/dev/null || fail "the download ended before the traffic figure rose ($first, then $second)"
    ((SECONDS < end + 60)) || fail "the traffic figure did not rise while the download ran ($first, then $second)"
    render during2 "$dashboard#token=$token"
    second=$(page during2 bytes:traffic-total)
    echo "traffic figure during the download: $first, then $second bytes"
done
kill -0 "$download" 2>/dev/null || fail "the download ended during the last look; the test cannot tell a live figure"
wait "$download" || fail "the download failed: $(cat "$TEST_TMP/download.log")"
assert_eq "$size" "$(tr -d '\n' <"$TEST_TMP/download.log")" "bytes downloaded"
render after "$dashboard#token=$token"
carried=$(page after "rowbytes:$forward")
echo "after the download the page shows $carried bytes through the forward"
((carried >= size)) || fail "the forward's figures ($carried) are below the download's size ($size)"
assert_eq "$carried" "$(page after bytes:traffic-total)" "the traffic figure is the forwards' sum"
echo "ok: $TEST_NAME"
