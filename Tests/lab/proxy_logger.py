"""proxy_logger.py ADDRESS PORT: a LAN HTTP server for t_forward_options.sh that takes an optional
PROXY protocol header (HAProxy's spec, v1 text or v2 binary) before each request and logs the client
address it names, one line per connection on stdout:

    v1 203.0.113.20:40312 -> 203.0.113.10:8081
    v2 2001:db8:113::20:40312 -> 2001:db8:113::10:8082
    none 192.168.77.2:51234            (no header: the connection's own peer, the mediator)

A malformed header is logged as "bad ..." and the connection closed, as a real server would.
Requests: GET /who (answers the logged line), GET /bytes/N (N zero bytes), PUT/POST with a
Content-Length (read and discarded; answers the count)."""
import socket
import socketserver
import struct
import sys

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(f, n):
    b = f.read(n)
    if len(b) != n:
        raise ValueError(f"short read: {len(b)} of {n}")
    return b


def parse_header(f, peer):
    first = f.peek(16)[:16]
    if first.startswith(b"PROXY "):
        line = f.readline(108)
        if not line.endswith(b"\r\n"):
            raise ValueError(f"v1 line without CRLF: {line!r}")
        parts = line[:-2].decode("ascii").split(" ")
        if parts[1] == "UNKNOWN":
            return "v1 unknown"
        if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
            raise ValueError(f"v1 line malformed: {line!r}")
        fam = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
        for a in parts[2:4]:
            socket.inet_pton(fam, a)  # raises on a bad address
        return f"v1 {parts[2]}:{int(parts[4])} -> {parts[3]}:{int(parts[5])}"
    if first[:12] == SIG[:12] and len(first) >= 12:
        head = read_exact(f, 16)
        ver_cmd, fam, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
        if ver_cmd >> 4 != 2:
            raise ValueError(f"v2 version {ver_cmd >> 4}")
        body = read_exact(f, length)
        if ver_cmd & 0xF == 0:
            return "v2 local"
        if fam == 0x11 and length >= 12:
            src, dst = socket.inet_ntop(socket.AF_INET, body[0:4]), socket.inet_ntop(socket.AF_INET, body[4:8])
            sport, dport = struct.unpack("!HH", body[8:12])
        elif fam == 0x21 and length >= 36:
            src, dst = socket.inet_ntop(socket.AF_INET6, body[0:16]), socket.inet_ntop(socket.AF_INET6, body[16:32])
            sport, dport = struct.unpack("!HH", body[32:36])
        else:
            raise ValueError(f"v2 family {fam:#x} length {length}")
        return f"v2 {src}:{sport} -> {dst}:{dport}"
    return f"none {peer[0]}:{peer[1]}"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            who = parse_header(self.rfile, self.client_address)
        except Exception as e:  # noqa: BLE001 - any bad header ends the connection
            print(f"bad {e}", flush=True)
            return
        print(who, flush=True)
        request = self.rfile.readline(4096).decode("latin-1").split()
        length = 0
        while True:
            h = self.rfile.readline(4096)
            if h in (b"\r\n", b"\n", b""):
                break
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":", 1)[1])
        if len(request) < 2:
            return
        method, path = request[0], request[1]
        if method in ("PUT", "POST"):
            left = length
            while left > 0:
                b = self.rfile.read(min(left, 65536))
                if not b:
                    return
                left -= len(b)
            self.reply(f"{length}\n".encode())
        elif path.startswith("/bytes/"):
            n = int(path[len("/bytes/"):])
            self.wfile.write(f"HTTP/1.0 200 OK\r\nContent-Length: {n}\r\n\r\n".encode())
            chunk = b"\0" * 65536
            while n > 0:
                self.wfile.write(chunk[: min(n, len(chunk))])
                n -= min(n, len(chunk))
        else:
            self.reply(f"{who}\n".encode())

    def reply(self, body):
        self.wfile.write(f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


Server((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
