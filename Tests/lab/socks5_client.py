#!/usr/bin/env python3
"""SOCKS5 client for the lab tests (t_socks.sh), speaking RFC 1928/1929 by hand.

Proxy from $SOCKS_PROXY (host:port), credentials from $SOCKS_USER / $SOCKS_PASS
(no authentication when SOCKS_USER is unset).

  pipe HOST PORT          CONNECT, then relay stdin/stdout (an ssh ProxyCommand)
  connect HOST PORT [SEND]  CONNECT; print "reply N"; on success send SEND, print what comes back
  bind PEER FILE          BIND naming PEER; write the first reply's address to FILE, print both
                          replies, then exchange a line with whoever connected
  udp N [DNS]             UDP ASSOCIATE; N DNS queries for files.lan to DNS:53 (192.168.77.10), each
                          checked (sender, id, question, answer); prints counts
  udp-denied HOST PORT    UDP ASSOCIATE; one datagram to HOST:PORT must get no answer
  raw HEX                 send HEX on a fresh connection; print what comes back (hex) and "closed"
"""
import ipaddress, os, random, select, socket, struct, sys, time

def proxy():
    host, port = os.environ.get("SOCKS_PROXY", "203.0.113.10:1080").rsplit(":", 1)
    return host, int(port)

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError(f"closed after {len(b)} of {n} bytes")
        b += c
    return b

def addr_bytes(host, port):
    try:
        ip = ipaddress.ip_address(host)
        return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed + struct.pack(">H", port)
    except ValueError:
        name = host.encode()
        return b"\x03" + bytes([len(name)]) + name + struct.pack(">H", port)

def read_addr(s):
    atyp = recv_exact(s, 1)[0]
    if atyp == 1:
        host = str(ipaddress.ip_address(recv_exact(s, 4)))
    elif atyp == 4:
        host = str(ipaddress.ip_address(recv_exact(s, 16)))
    else:
        host = recv_exact(s, recv_exact(s, 1)[0]).decode()
    return host, struct.unpack(">H", recv_exact(s, 2))[0]

def open_proxy():
    s = socket.create_connection(proxy(), timeout=15)
    user, password = os.environ.get("SOCKS_USER"), os.environ.get("SOCKS_PASS", "")
    if user is None:
        s.sendall(b"\x05\x01\x00")
        assert recv_exact(s, 2) == b"\x05\x00", "no-auth refused"
    else:
        s.sendall(b"\x05\x01\x02")
        sel = recv_exact(s, 2)
        assert sel == b"\x05\x02", f"method selection {sel.hex()}"
        u, p = user.encode(), password.encode()
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        status = recv_exact(s, 2)
        if status != b"\x01\x00":
            raise PermissionError(f"authentication refused: {status.hex()}")
    return s

def request(s, cmd, host, port):
    s.sendall(b"\x05" + bytes([cmd]) + b"\x00" + addr_bytes(host, port))
    head = recv_exact(s, 3)
    assert head[0] == 5 and head[2] == 0, f"reply header {head.hex()}"
    return head[1], read_addr(s)

def cmd_pipe(host, port):
    s = open_proxy()
    rep, _ = request(s, 1, host, int(port))
    if rep != 0:
        sys.exit(f"CONNECT refused: reply {rep}")
    s.settimeout(None)
    fds = [sys.stdin.buffer.raw, s]
    while True:
        r, _, _ = select.select(fds, [], [])
        if s in r:
            d = s.recv(65536)
            if not d:
                return
            sys.stdout.buffer.write(d)
            sys.stdout.buffer.flush()
        if sys.stdin.buffer.raw in r:
            d = os.read(0, 65536)
            if not d:
                s.shutdown(socket.SHUT_WR)
                fds.remove(sys.stdin.buffer.raw)
            else:
                s.sendall(d)

def cmd_connect(host, port, send=None):
    s = open_proxy()
    rep, bound = request(s, 1, host, int(port))
    print(f"reply {rep}")
    if rep == 0 and send is not None:
        s.sendall(send.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        print(got.decode().strip())
    rest = s.recv(1) if rep != 0 else b""
    if rep != 0:
        print("closed" if rest == b"" else f"not closed: {rest.hex()}")

def cmd_bind(peer, path):
    s = open_proxy()
    rep, bound = request(s, 2, peer, 0)
    print(f"first reply {rep} {bound[0]}:{bound[1]}", flush=True)
    if rep != 0:
        return
    with open(path + ".tmp", "w") as f:
        f.write(f"{bound[0]} {bound[1]}\n")
    os.rename(path + ".tmp", path)
    s.settimeout(60)
    rep2, who = request_second(s)
    print(f"second reply {rep2} {who[0]}:{who[1]}", flush=True)
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        line += d
    print(f"peer says: {line.decode().strip()}")
    s.sendall(b"hello from user\n")
    s.close()

def request_second(s):
    head = recv_exact(s, 3)
    assert head[0] == 5 and head[2] == 0, f"second reply header {head.hex()}"
    return head[1], read_addr(s)

def associate():
    s = open_proxy()
    rep, relay = request(s, 3, "0.0.0.0", 0)
    assert rep == 0, f"UDP ASSOCIATE refused: reply {rep}"
    u = socket.socket(socket.AF_INET6 if ":" in relay[0] else socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    return s, u, relay

def dns_query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)

def udp_header(host, port):
    return b"\x00\x00\x00" + addr_bytes(host, port)

def cmd_udp(n, dns="192.168.77.10"):
    s, u, relay = associate()
    ok = corrupted = lost = 0
    for i in range(int(n)):
        qid = random.randrange(65536)
        # Random letter case: dnsmasq echoes the question, so any flipped byte shows.
        name = "".join(c.upper() if random.random() < 0.5 else c for c in "files.lan")
        query = dns_query(qid, name)
        want_header = udp_header(dns, 53)
        for attempt in range(3):
            u.sendto(want_header + query, relay)
            try:
                data, src = u.recvfrom(65536)
            except socket.timeout:
                continue
            break
        else:
            lost += 1
            continue
        good = (ipaddress.ip_address(src[0]) == ipaddress.ip_address(relay[0]) and data.startswith(want_header)
                and data[len(want_header):len(want_header) + 2] == struct.pack(">H", qid)
                and query[12:] in data and socket.inet_aton("192.168.77.10") in data[len(want_header) + len(query):])
        if good:
            ok += 1
        else:
            corrupted += 1
            print(f"corrupted answer {i}: {data.hex()}")
    # A fragment (FRAG 1) is dropped: no answer comes.
    u.sendto(b"\x00\x00\x01" + addr_bytes(dns, 53) + dns_query(1, "files.lan"), relay)
    try:
        u.recvfrom(65536)
        frag = "answered"
    except socket.timeout:
        frag = "dropped"
    print(f"udp: {ok} ok, {corrupted} corrupted, {lost} lost; fragment {frag}")
    s.close()

def cmd_udp_denied(host, port):
    s, u, relay = associate()
    u.sendto(udp_header(host, int(port)) + dns_query(7, "files.lan"), relay)
    try:
        u.recvfrom(65536)
        print("answered")
    except socket.timeout:
        print("no answer")
    s.close()

def cmd_raw(hexbytes):
    s = socket.create_connection(proxy(), timeout=15)
    s.sendall(bytes.fromhex(hexbytes))
    got = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                got_closed = True
                break
            got += d
    except socket.timeout:
        got_closed = False
    except ConnectionResetError:
        got_closed = True
    print(f"{got.hex() or '-'} {'closed' if got_closed else 'open'}")

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        {"pipe": cmd_pipe, "connect": cmd_connect, "bind": cmd_bind, "udp": cmd_udp,
         "udp-denied": cmd_udp_denied, "raw": cmd_raw}[cmd](*args)
    except PermissionError as e:
        print(e)
        sys.exit(3)

if __name__ == "__main__":
    main()
