import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import PosternTLS

#if canImport(Glibc)
    import Glibc
#endif

/// The admin API's client for `postern ctl`: NIO's HTTP/1.1 client codec over a `ClientBootstrap`,
/// with TLS when the URL says `https://`. Every address the host name resolves to is tried in
/// order, each with its own connect timeout (a name with an IPv6 address the host cannot reach
/// still works over IPv4), and the whole request has a deadline. `ctl` makes one request and
/// exits, so the calls block the calling thread until the answer is complete.
public struct AdminClient: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// `https://`: the admin API is served over TLS (`server --admin-tls`).
    public let secure: Bool
    public let host: String
    public let port: UInt16
    public let token: String?
    /// For `https://`; a request over TLS without it is refused (verification is never skipped).
    public var tls: AdminClientTLS?
    /// Per address tried.
    public var connectTimeout: TimeAmount = .seconds(5)
    /// For the whole request: every connect, the TLS handshake and the answer (for a stream, its
    /// head; the lines after it may come for as long as the server runs).
    public var timeout: TimeAmount = .seconds(60)
    /// The addresses to try instead of resolving `host` (tests give an address that refuses first).
    var addressesGiven: [SocketAddress]?

    /// Accepts `http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT` (plain HTTP); a path is ignored.
    public init(url: String, token: String?) throws {
        var s = Substring(url)
        var secure = false
        if s.hasPrefix("http://") {
            s = s.dropFirst(7)
        } else if s.hasPrefix("https://") {
            s = s.dropFirst(8)
            secure = true
        }
        if let slash = s.firstIndex(of: "/") { s = s[..<slash] }
        guard let colon = s.lastIndex(of: ":"), let p = UInt16(s[s.index(after: colon)...]) else {
            throw Failure(description: "admin URL '\(url)' needs a port, like http://127.0.0.1:7070")
        }
        var h = String(s[..<colon])
        if h.hasPrefix("[") { h = String(h.dropFirst().dropLast()) }
        self.secure = secure
        host = h
        port = p
        self.token = token
    }

    /// One request; returns the status and the whole body.
    public func request(_ method: String, _ path: String, body: Data? = nil) throws -> (status: Int, body: Data) {
        let answer = try exchange(method: HTTPMethod(rawValue: method), path: path, body: body, mode: .whole)
        return (answer.status, Data(answer.body.readableBytesView))
    }

    /// A stream of lines (the event stream); calls `line` for each, on another thread, until the
    /// server ends it.
    public func stream(_ path: String, line: @escaping @Sendable (String) -> Void) throws {
        let answer = try exchange(method: .GET, path: path, body: nil, mode: .lines(line))
        guard answer.status == 200 else {
            // As ctl always said it: the status line; then the server's reason, as every other ctl
            // command shows it (a 401 said only "Unauthorized", not where ctl looks for the token).
            let object = try? JSONSerialization.jsonObject(with: Data(answer.body.readableBytesView)) as? [String: Any]
            let reason = ((object?["message"] ?? object?["error"]) as? String).map { ": \($0)" } ?? ""
            throw Failure(description: "event stream refused: \(answer.statusLine)\(reason)")
        }
    }

    // MARK: - Addresses

    /// Every address `host` resolves to, in the resolver's order, each once.
    func addresses() throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, result != nil else {
            throw Failure(description: "cannot resolve admin host \(host)")
        }
        defer { freeaddrinfo(result) }
        var out: [SocketAddress] = []
        var next = result
        while let info = next {
            next = info.pointee.ai_next
            var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0,
                let address = try? SocketAddress(ipAddress: String(cString: name), port: Int(port)), !out.contains(address)
            else { continue }
            out.append(address)
        }
        guard !out.isEmpty else { throw Failure(description: "cannot resolve admin host \(host): no address") }
        return out
    }

    /// Connects to the first of `addresses` that takes the connection, in order; the failures of
    /// those before it go into the error if none does.
    func connect(_ addresses: [SocketAddress], deadline: NIODeadline, on loop: EventLoop) -> EventLoopFuture<(Channel, SocketAddress)> {
        let failures = LockedBox<[String]>([])
        func attempt(_ index: Int) -> EventLoopFuture<(Channel, SocketAddress)> {
            let address = addresses[index]
            let left = deadline - .now()
            guard left > .zero else { return loop.makeFailedFuture(timedOut()) }
            let wait = min(connectTimeout, left)
            return ClientBootstrap(group: loop)
                .connectTimeout(wait)
                .connect(to: address)
                .map { ($0, address) }
                .flatMapError { error in
                    failures.value.append((addresses.count > 1 ? "\(Self.display(address)): " : "") + Self.describeConnect(error, wait))
                    guard index + 1 < addresses.count else {
                        return loop.makeFailedFuture(
                            Failure(
                                description:
                                    "cannot reach the admin API at \(host):\(port): \(failures.value.joined(separator: "; ")) (is the server running with --admin?)"
                            ))
                    }
                    return attempt(index + 1)
                }
        }
        return attempt(0)
    }

    // MARK: - The exchange

    private func exchange(method: HTTPMethod, path: String, body: Data?, mode: AdminExchange.Mode) throws -> AdminExchange.Answer {
        if secure, tls == nil {
            throw Failure(description: "https:// needs a way to verify the admin API's certificate: --admin-pin or --admin-ca")
        }
        let addresses = try addressesGiven ?? addresses()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let deadline = NIODeadline.now() + timeout
        let answer = loop.makePromise(of: AdminExchange.Answer.self)
        let checks = LockedBox<AdminClientTLS.Check?>(nil)
        let future = connect(addresses, deadline: deadline, on: loop).flatMap { connected -> EventLoopFuture<Void> in
            let (channel, address) = connected
            // The numeric address reached goes in Host: the server's Host check accepts it,
            // whatever name the URL used.
            let ip = address.ipAddress ?? host
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)")
            headers.add(name: "Connection", value: "close")
            if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
            var buffer: ByteBuffer?
            if let body {
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: "\(body.count)")
                buffer = channel.allocator.buffer(bytes: body)
            }
            let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
            let exchange = AdminExchange(head: head, body: buffer, mode: mode, deadline: deadline, timedOut: timedOut, answer: answer)
            do {
                let sync = channel.pipeline.syncOperations
                if let tls {
                    let (handler, check) = try tls.handler(host: host, port: Int(port))
                    checks.value = check
                    try sync.addHandler(handler)
                }
                try sync.addHTTPClientHandlers()
                try sync.addHandler(exchange)
            } catch {
                channel.close(promise: nil)
                return loop.makeFailedFuture(error)
            }
            return loop.makeSucceededVoidFuture()
        }
        future.cascadeFailure(to: answer)
        do {
            return try answer.futureResult.wait()
        } catch let error as Failure {
            if !secure, error.description == "the admin API closed the connection without answering" {
                throw Failure(description: error.description + " (if the server runs with --admin-tls, use https://)")
            }
            throw error
        } catch {
            if let check = checks.value { throw Failure(description: check.describe(error)) }
            if error is HTTPParserError { throw Failure(description: "the admin API sent no valid HTTP response") }
            throw Failure(description: "admin API at \(host):\(port): \(error)")
        }
    }

    private func timedOut() -> Error {
        Failure(description: "the admin API at \(host):\(port) did not answer within \(Self.seconds(timeout)) (--admin-timeout)")
    }

    static func seconds(_ t: TimeAmount) -> String {
        let s = Double(t.nanoseconds) / 1e9
        return s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }

    static func display(_ address: SocketAddress) -> String {
        let ip = address.ipAddress ?? "?"
        return ip.contains(":") ? "[\(ip)]:\(address.port ?? 0)" : "\(ip):\(address.port ?? 0)"
    }

    /// What went wrong with one connect: the system's words for it, or the timeout that ran out.
    static func describeConnect(_ error: Error, _ wait: TimeAmount) -> String {
        if let e = error as? ChannelError, case .connectTimeout = e { return "no answer within \(seconds(wait)) (connect timeout)" }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first {
            return describeConnect(first.error, wait)
        }
        return "\(error)"
    }
}

/// A value set on the event loop and read after the future completed (which orders the two).
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
