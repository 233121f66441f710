#!/usr/bin/env python3
"""Paced TCP sender for t_metrics: sends to HOST:PORT at a steady rate, and twice scrapes
METRICS_URL for postern_forward_bytes_total{forward=FORWARD,direction="to_mediator"}: once halfway
with the connection still open (after a short pause so nothing is in flight), once after closing.
Each scrape must be within 5% of the bytes sent so far. Prints what it saw; exits 1 on a mismatch."""
import re
import socket
import sys
import time
import urllib.request

host, port, url, forward, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
chunk = b"\xa5" * 65536
rate = 8 << 20  # bytes per second: well below what the lab carries, so socket buffers stay empty


def scrape():
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        m = re.match(r'^(postern_forward_\w+)\{(.*)\} (\S+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        if labels.get("forward") != forward:
            continue
        key = m.group(1) + ("/" + labels["direction"] if "direction" in labels else "")
        values[key] = float(m.group(3))
    return values


def check(what, sent, values):
    got = values.get("postern_forward_bytes_total/to_mediator")
    if got is None:
        print(f"FAIL {what}: no postern_forward_bytes_total for {forward}")
        sys.exit(1)
    ratio = got / sent
    print(f"{what}: sent {sent} bytes, metrics say {int(got)} (ratio {ratio:.4f}), open {values.get('postern_forward_connections_open')}")
    if abs(ratio - 1) > 0.05:
        print(f"FAIL {what}: off by more than 5%")
        sys.exit(1)


s = socket.create_connection((host, port), timeout=10)
sent = 0
start = time.monotonic()
checked_mid = False
while time.monotonic() - start < seconds:
    s.sendall(chunk)
    sent += len(chunk)
    if not checked_mid and time.monotonic() - start >= seconds / 2:
        time.sleep(0.5)
        values = scrape()
        check("during the transfer", sent, values)
        if values.get("postern_forward_connections_open") != 1:
            print("FAIL during the transfer: connections_open is not 1")
            sys.exit(1)
        checked_mid = True
    due = start + sent / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
s.shutdown(socket.SHUT_WR)
s.recv(1)  # the sink closes when it has read everything
s.close()
time.sleep(1)
values = scrape()
check("after the transfer", sent, values)
if values.get("postern_forward_connections_open") != 0:
    print("FAIL after the transfer: connections_open is not 0")
    sys.exit(1)
