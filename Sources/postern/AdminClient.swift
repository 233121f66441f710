import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A small blocking HTTP/1.1 client for the admin API: `ctl` makes one request and exits, so a
/// socket and a parser of `Content-Length` or close-delimited bodies are all it needs.
struct AdminClient {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let host: String
    let port: UInt16
    let token: String?

    /// Accepts `http://HOST:PORT` or `HOST:PORT`.
    init(url: String, token: String?) throws {
        var s = Substring(url)
        if s.hasPrefix("http://") { s = s.dropFirst(7) }
        if s.hasPrefix("https://") { throw Failure(description: "the admin API speaks plain HTTP on its bound address; use http://") }
        if let slash = s.firstIndex(of: "/") { s = s[..<slash] }
        guard let colon = s.lastIndex(of: ":"), let p = UInt16(s[s.index(after: colon)...]) else {
            throw Failure(description: "admin URL '\(url)' needs a port, like http://127.0.0.1:7070")
        }
        var h = String(s[..<colon])
        if h.hasPrefix("[") { h = String(h.dropFirst().dropLast()) }
        host = h
        port = p
        self.token = token
    }

    /// Connects; answers the socket and the `Host` header to send: the numeric address actually
    /// reached, which the server's Host check accepts whatever name `--admin` used.
    private func connect() throws -> (CInt, String) {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
            throw Failure(description: "cannot resolve admin host \(host)")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        guard Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let e = errno
            close(fd)
            throw Failure(
                description:
                    "cannot reach the admin API at \(host):\(port): \(String(cString: strerror(e))) (is the server running with --admin?)")
        }
        var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var numeric = host
        if getnameinfo(first.pointee.ai_addr, first.pointee.ai_addrlen, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0 {
            numeric = String(cString: name)
        }
        return (fd, numeric.contains(":") ? "[\(numeric)]:\(port)" : "\(numeric):\(port)")
    }

    private func send(_ fd: CInt, host: String, method: String, path: String, body: Data?) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if let body { bytes += body }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "sending to the admin API failed") }
            offset += n
        }
    }

    /// One request; returns the status and the whole body.
    func request(_ method: String, _ path: String, body: Data? = nil) throws -> (status: Int, body: Data) {
        let (fd, hostHeader) = try connect()
        defer { close(fd) }
        try send(fd, host: hostHeader, method: method, path: path, body: body)
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        guard let end = data.range(of: Data("\r\n\r\n".utf8)) else {
            throw Failure(description: "the admin API sent no valid HTTP response")
        }
        let head = String(decoding: data[..<end.lowerBound], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw Failure(description: "the admin API sent a bad status line: \(statusLine)")
        }
        return (status, Data(data[end.upperBound...]))
    }

    /// A close-delimited stream of lines (the event stream); calls `line` for each until EOF.
    func stream(_ path: String, line: (String) -> Void) throws {
        let (fd, hostHeader) = try connect()
        defer { close(fd) }
        try send(fd, host: hostHeader, method: "GET", path: path, body: nil)
        var pending = Data()
        var headerDone = false
        // The server's HTTP/1.1 encoder sends the stream with `Transfer-Encoding: chunked`:
        // undo the chunking before splitting lines, or the chunk sizes show up as lines.
        var chunked = false
        var raw = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            raw.append(contentsOf: buffer[0..<n])
            if !headerDone {
                guard let end = raw.range(of: Data("\r\n\r\n".utf8)) else { continue }
                let head = String(decoding: raw[..<end.lowerBound], as: UTF8.self)
                guard head.hasPrefix("HTTP/1.1 200") else {
                    throw Failure(description: "event stream refused: \(head.split(separator: "\r\n").first ?? "")")
                }
                chunked = head.lowercased().split(separator: "\r\n").contains {
                    $0.hasPrefix("transfer-encoding:") && $0.contains("chunked")
                }
                raw = Data(raw[end.upperBound...])
                headerDone = true
            }
            if chunked {
                // Each chunk: SIZE-IN-HEX[;ext] CRLF, SIZE bytes, CRLF; a zero size ends the body.
                while let lineEnd = raw.range(of: Data("\r\n".utf8)) {
                    let sizeText = String(decoding: raw[raw.startIndex..<lineEnd.lowerBound], as: UTF8.self)
                    guard let size = Int(sizeText.split(separator: ";").first?.trimmingCharacters(in: .whitespaces) ?? "", radix: 16) else {
                        throw Failure(description: "the event stream sent a bad chunk header: \(sizeText)")
                    }
                    if size == 0 { return }
                    guard raw.count - (lineEnd.upperBound - raw.startIndex) >= size + 2 else { break }
                    let start = lineEnd.upperBound
                    pending.append(raw[start..<(start + size)])
                    raw = Data(raw[(start + size + 2)...])
                }
            } else {
                pending.append(raw)
                raw = Data()
            }
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                line(String(decoding: pending[pending.startIndex..<nl], as: UTF8.self))
                pending = Data(pending[pending.index(after: nl)...])
            }
        }
    }
}
