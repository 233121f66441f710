import CPosternShims
import Foundation
import NIOCore
import NIOPosix
import PosternCore
import PosternPacket
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// ECHO on the mediator (docs/protocol.md §11): sends one ICMP echo request per ECHO from this host
/// and waits for its answer. The socket kind is chosen once, at start: an unprivileged ICMP datagram
/// socket where `net.ipv4.ping_group_range` allows it, else a raw socket (CAP_NET_RAW), else none,
/// with the reason in words; an IPv6 destination gets the ICMPv6 socket of the same kind (the same
/// sysctl admits it). Each request has a socket of its own, so answers never cross; the blocking
/// wait runs on a small pool of its own, never on the event loop. A name is resolved here first, on
/// another pool: the LAN's view, as ping run on this host would have it.
final class ICMPEcho: Sendable {
    enum Mode: Hashable, Sendable, CustomStringConvertible {
        case datagram
        case raw
        /// No ICMP socket can be opened here; the text names what is missing.
        case unavailable(String)

        var description: String {
            switch self {
            case .datagram: return "ICMP datagram socket (net.ipv4.ping_group_range admits this group)"
            case .raw: return "raw ICMP socket (CAP_NET_RAW)"
            case .unavailable(let why): return "unavailable: \(why)"
            }
        }
    }

    let mode: Mode
    /// What this host allows, for ENVIRONMENT: raw sockets, ICMP datagram sockets, CAP_NET_ADMIN.
    let capabilities: MediatorEnvironment.Capabilities
    /// The effective capability set, nil when /proc/self/status could not be read.
    let process: ProcessCapabilities?
    /// ECHOs waiting at once per session (docs/protocol.md §11.2); more are refused `limitExceeded`.
    static let maxInFlight = 16
    /// Threads that wait for answers: requests beyond them queue, their timeouts starting at sending.
    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    /// A chosen mode, for tests.
    init(mode: Mode, capabilities: MediatorEnvironment.Capabilities = [.echoOffered], process: ProcessCapabilities? = nil) {
        self.mode = mode
        self.capabilities = capabilities
        self.process = process
    }

    /// Finds out what this host allows: the effective capabilities and which ICMP sockets open.
    init() {
        process = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)).flatMap(ProcessCapabilities.init(status:))
        var capabilities: MediatorEnvironment.Capabilities = [.echoOffered, .echoNames]
        if process?.hasNetAdmin == true { capabilities.insert(.netAdmin) }
        let datagram = Self.canOpen(raw: false)
        let raw = Self.canOpen(raw: true)
        if datagram { capabilities.insert(.icmpDatagram) }
        if raw { capabilities.insert(.rawSockets) }
        self.capabilities = capabilities
        if datagram {
            mode = .datagram
        } else if raw {
            mode = .raw
        } else {
            let range = try? String(contentsOfFile: "/proc/sys/net/ipv4/ping_group_range", encoding: .utf8)
            mode = .unavailable(ProcessCapabilities.icmpRefusal(group: UInt32(getegid()), pingGroupRange: range))
        }
    }

    private static func canOpen(raw: Bool) -> Bool {
        let fd = postern_icmp_socket(raw ? 1 : 0, 64)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// Sends `echo` and answers what came back (or `noAnswer` at the timeout), on `eventLoop`.
    func send(_ echo: Frame.Echo, on eventLoop: EventLoop) -> EventLoopFuture<Frame.EchoReply> {
        let mode = mode
        return Self.pool.runIfActive(eventLoop: eventLoop) { try Self.run(echo, mode: mode) }
    }

    /// How long a name may take to resolve before the ECHO fails `resolveFailed`.
    static let resolveTimeout = TimeAmount.seconds(5)

    /// Threads that resolve names for ECHO: a pool of their own, so lookups that hang (an
    /// unreachable name server) never hold up CONNECT's resolution or the echo waits.
    private static let resolverPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    /// Resolves `name` in this host's network (its resolver, /etc/hosts...) to the first address of
    /// `family`, off the event loop. `answer` fails `resolveFailed` after `resolveTimeout`;
    /// getaddrinfo cannot be cancelled, so `finished` completes only when the lookup itself ends
    /// (its late answer dropped): the caller holds its slot until then, which bounds the lookups
    /// a peer can leave hanging.
    static func resolve(_ name: String, family: Frame.Echo.Family, on eventLoop: EventLoop) -> (
        answer: EventLoopFuture<IPAddress>, finished: EventLoopFuture<Void>
    ) {
        let promise = eventLoop.makePromise(of: IPAddress.self)
        let done = NIOLoopBoundBox(false, eventLoop: eventLoop)
        let shown = PeerText.sanitized(name)
        let timer = eventLoop.scheduleTask(in: resolveTimeout) {
            guard !done.value else { return }
            done.value = true
            promise.fail(
                Failure(
                    code: .resolveFailed, errno: 0,
                    description: "resolving \(shown) took longer than \(resolveTimeout.nanoseconds / 1_000_000_000) s"))
        }
        let lookup = resolverPool.runIfActive(eventLoop: eventLoop) { try lookUp(name, family: family) }
        lookup.whenComplete { result in
            timer.cancel()
            guard !done.value else { return }
            done.value = true
            promise.completeWith(result)
        }
        return (promise.futureResult, lookup.map { _ in }.recover { _ in })
    }

    /// getaddrinfo for `name`, the first address of `family`. Blocks.
    private static func lookUp(_ name: String, family: Frame.Echo.Family) throws -> IPAddress {
        // getaddrinfo would read a name with a NUL only up to it, and no host name holds spaces or
        // control characters: such a name is refused, not half-resolved.
        guard name.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }) else {
            throw Failure(code: .resolveFailed, errno: 0, description: "\(PeerText.sanitized(name)) is not a host name")
        }
        var hints = addrinfo()
        switch family {
        case .any: hints.ai_family = AF_UNSPEC
        case .ipv4: hints.ai_family = AF_INET
        case .ipv6: hints.ai_family = AF_INET6
        }
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, nil, &hints, &list)
        let shown = PeerText.sanitized(name)
        guard rc == 0, let first = list else {
            let why = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
            let which = family == .any ? "" : family == .ipv4 ? " (IPv4)" : " (IPv6)"
            throw Failure(code: .resolveFailed, errno: 0, description: "cannot resolve \(shown)\(which): \(why)")
        }
        defer { freeaddrinfo(list) }
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let e = entry {
            if let sa = e.pointee.ai_addr {
                if e.pointee.ai_family == AF_INET {
                    let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                    return .v4(UInt32(bigEndian: a))
                }
                if e.pointee.ai_family == AF_INET6 {
                    var a = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    if let address = withUnsafeBytes(of: &a, { IPAddress(bytes: $0) }) { return address }
                }
            }
            entry = e.pointee.ai_next
        }
        throw Failure(code: .resolveFailed, errno: 0, description: "cannot resolve \(shown): no IPv4 or IPv6 address")
    }

    struct Failure: Error, CustomStringConvertible {
        var code: ErrorCode
        var errno: Int32
        var description: String
    }

    /// The blocking exchange: open, send, wait for the matching answer until the timeout.
    private static func run(_ echo: Frame.Echo, mode: Mode) throws -> Frame.EchoReply {
        let raw: Bool
        switch mode {
        case .datagram: raw = false
        case .raw: raw = true
        case .unavailable(let why): throw Failure(code: .notSupported, errno: 0, description: why)
        }
        switch echo.destination {
        case .v4(let destination)?: return try runV4(echo, destination: destination, raw: raw)
        case .v6(let destination)?: return try runV6(echo, destination: destination, raw: raw)
        case nil: throw Failure(code: .internalError, errno: 0, description: "an ICMP echo to a name that was not resolved")
        }
    }

    /// The exchange with an IPv4 destination.
    private static func runV4(_ echo: Frame.Echo, destination: UInt32, raw: Bool) throws -> Frame.EchoReply {
        let target = IPAddress.v4(destination)
        let fd = postern_icmp_socket(raw ? 1 : 0, Int32(echo.ttl))
        guard fd >= 0 else {
            throw Failure(
                code: ErrorCode(errno: -fd), errno: -fd, description: "cannot open an ICMP socket: \(String(cString: strerror(-fd)))")
        }
        defer { close(fd) }
        // A datagram socket's identifier is the kernel's (it rewrites it); a raw socket's is ours.
        let identifier: UInt16? = raw ? UInt16.random(in: 1...UInt16.max) : nil
        let payload = (0..<Int(echo.size)).map { UInt8(truncatingIfNeeded: $0 &+ 8) }
        let request = ICMPMessage.echoRequest(identifier: identifier ?? 0, sequence: echo.sequence, payload: payload)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = destination.bigEndian
        let timeout = Int64(min(max(echo.timeoutMillis, 1), Frame.Echo.maxTimeoutMillis)) * 1_000_000
        let sentAt = NIODeadline.now()
        let sent = request.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard sent == request.count else {
            let e = errno
            // The host itself refuses: no route, a local firewall... the answer says so like ping does.
            if e == ENETUNREACH || e == EHOSTUNREACH {
                return Frame.EchoReply(
                    requestID: echo.requestID, outcome: .unreachable, icmpType: ICMPMessage.unreachableType,
                    icmpCode: e == ENETUNREACH ? 0 : 1, from: target, ttl: 0, size: 0, rttMicros: 0)
            }
            throw Failure(
                code: ErrorCode(errno: e), errno: e, description: "sending the echo request failed: \(String(cString: strerror(e)))")
        }
        return wait(fd: fd, echo: echo, target: target, sentAt: sentAt, timeout: timeout) { errqueue, buffer in
            var info = postern_icmp_received()
            let n = buffer.withUnsafeMutableBytes { postern_icmp_recv(fd, $0.baseAddress, $0.count, errqueue, &info) }
            guard n >= 0 else { return nil }
            let from = IPAddress.v4(UInt32(bigEndian: info.from))
            return Self.answer(Array(buffer[0..<n]), info: info, from: from, raw: raw, echo: echo, target: target, identifier: identifier)
        }
    }

    /// Waits on `fd` until `read` (given 1 to read the error queue, 0 the ordinary one, and a
    /// buffer) finds the answer to `echo`, or the timeout passes: then `noAnswer`. The answer's
    /// round-trip time is measured from `sentAt`.
    private static func wait(
        fd: Int32, echo: Frame.Echo, target: IPAddress, sentAt: NIODeadline, timeout: Int64,
        read: (Int32, inout [UInt8]) -> Frame.EchoReply?
    ) -> Frame.EchoReply {
        let deadline = sentAt + .nanoseconds(timeout)
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let left = deadline - NIODeadline.now()
            guard left > .zero else { break }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(max(1, left.nanoseconds / 1_000_000)))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            for errqueue in (poller.revents & Int16(POLLERR) != 0 ? [1, 0] : [0]) {
                guard var reply = read(Int32(errqueue), &buffer) else { continue }
                reply.rttMicros = UInt32(clamping: (NIODeadline.now() - sentAt).nanoseconds / 1000)
                return reply
            }
        }
        return Frame.EchoReply(
            requestID: echo.requestID, outcome: .noAnswer, icmpType: 0, icmpCode: 0, from: target, ttl: 0, size: 0,
            rttMicros: UInt32(clamping: timeout / 1000))
    }

    /// The exchange with an IPv6 destination: ICMPv6 through a socket of the same kind as for IPv4
    /// (net.ipv4.ping_group_range admits ICMPv6 datagram sockets too), the hop limit set to the
    /// request's TTL. Such sockets hand over the ICMPv6 message alone; the sender and hop limit
    /// come beside it.
    private static func runV6(_ echo: Frame.Echo, destination: [UInt8], raw: Bool) throws -> Frame.EchoReply {
        let target = IPAddress.v6(destination)
        let fd = postern_icmp6_socket(raw ? 1 : 0, Int32(echo.ttl))
        guard fd >= 0 else {
            throw Failure(
                code: ErrorCode(errno: -fd), errno: -fd, description: "cannot open an ICMPv6 socket: \(String(cString: strerror(-fd)))")
        }
        defer { close(fd) }
        let identifier: UInt16? = raw ? UInt16.random(in: 1...UInt16.max) : nil
        let payload = (0..<Int(echo.size)).map { UInt8(truncatingIfNeeded: $0 &+ 8) }
        let request = ICMPv6Message.echoRequest(identifier: identifier ?? 0, sequence: echo.sequence, payload: payload)
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: destination) }
        let timeout = Int64(min(max(echo.timeoutMillis, 1), Frame.Echo.maxTimeoutMillis)) * 1_000_000
        let sentAt = NIODeadline.now()
        let sent = request.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        guard sent == request.count else {
            let e = errno
            // No route on this host: ping6 words it "Destination unreachable: No route" (code 0),
            // or "Address unreachable" (code 3) when the neighbour is known not to answer.
            if e == ENETUNREACH || e == EHOSTUNREACH {
                return Frame.EchoReply(
                    requestID: echo.requestID, outcome: .unreachable, icmpType: ICMPv6Message.unreachableType,
                    icmpCode: e == ENETUNREACH ? 0 : 3, from: target, ttl: 0, size: 0, rttMicros: 0)
            }
            throw Failure(
                code: ErrorCode(errno: e), errno: e, description: "sending the ICMPv6 echo request failed: \(String(cString: strerror(e)))")
        }
        return wait(fd: fd, echo: echo, target: target, sentAt: sentAt, timeout: timeout) { errqueue, buffer in
            var info = postern_icmp6_received()
            let n = buffer.withUnsafeMutableBytes { postern_icmp6_recv(fd, $0.baseAddress, $0.count, errqueue, &info) }
            guard n >= 0, let from = withUnsafeBytes(of: info.from, { IPAddress(bytes: $0) }) else { return nil }
            return Self.answerV6(Array(buffer[0..<n]), info: info, from: from, echo: echo, target: target, identifier: identifier)
        }
    }

    /// The answer to `echo` (IPv6) that `bytes` hold, or nil when they answer something else.
    /// For packet too big, `size` carries the MTU the router reported (docs/protocol.md §11.2).
    private static func answerV6(
        _ bytes: [UInt8], info: postern_icmp6_received, from: IPAddress, echo: Frame.Echo, target: IPAddress, identifier: UInt16?
    ) -> Frame.EchoReply? {
        let hops = info.hops >= 0 ? UInt8(clamping: info.hops) : 0
        if info.is_error != 0 {
            // The error queue hands back our own request; the error itself is in `info`.
            guard case .echoRequest(_, let sequence, _)? = try? ICMPv6Message(parsing: bytes), sequence == echo.sequence,
                let outcome = ICMPv6Message.outcome(ofErrorType: info.type)
            else { return nil }
            let size = info.type == ICMPv6Message.packetTooBigType ? UInt16(clamping: info.info) : 0
            return Frame.EchoReply(
                requestID: echo.requestID, outcome: outcome, icmpType: info.type, icmpCode: info.code, from: from, ttl: 0,
                size: size, rttMicros: 0)
        }
        guard let message = try? ICMPv6Message(parsing: bytes),
            let outcome = message.outcome(forEchoTo: target, identifier: identifier, sequence: echo.sequence, from: from)
        else { return nil }
        switch message {
        case .echoReply(_, _, let payloadSize):
            return Frame.EchoReply(
                requestID: echo.requestID, outcome: outcome, icmpType: 0, icmpCode: 0, from: from, ttl: hops,
                size: UInt16(clamping: payloadSize), rttMicros: 0)
        case .error(let type, let code, let mtu, _):
            return Frame.EchoReply(
                requestID: echo.requestID, outcome: outcome, icmpType: type, icmpCode: code, from: from, ttl: hops,
                size: type == ICMPv6Message.packetTooBigType ? UInt16(clamping: mtu) : 0, rttMicros: 0)
        case .echoRequest, .other:
            return nil
        }
    }

    /// The answer to `echo` that `bytes` hold, or nil when they answer something else.
    private static func answer(
        _ bytes: [UInt8], info: postern_icmp_received, from: IPAddress, raw: Bool, echo: Frame.Echo, target: IPAddress, identifier: UInt16?
    ) -> Frame.EchoReply? {
        let message: ICMPMessage
        var source = from
        var ttl = info.ttl >= 0 ? UInt8(clamping: info.ttl) : 0
        if raw {
            guard let parsed = try? ICMPMessage.parseIPv4(bytes) else { return nil }
            source = parsed.source
            ttl = parsed.ttl
            message = parsed.message
        } else if info.is_error != 0 {
            // The error queue hands back our own request; the error itself is in `info`.
            guard case .echoRequest(_, let sequence, _)? = try? ICMPMessage(parsing: bytes, verifyChecksum: false),
                sequence == echo.sequence
            else { return nil }
            let outcome: Frame.EchoReply.Outcome
            switch info.type {
            case ICMPMessage.timeExceededType: outcome = .timeExceeded
            case ICMPMessage.unreachableType: outcome = .unreachable
            default: return nil
            }
            return Frame.EchoReply(
                requestID: echo.requestID, outcome: outcome, icmpType: info.type, icmpCode: info.code, from: source, ttl: 0, size: 0,
                rttMicros: 0)
        } else {
            guard let parsed = try? ICMPMessage(parsing: bytes) else { return nil }
            message = parsed
        }
        guard let outcome = message.outcome(forEchoTo: target, identifier: identifier, sequence: echo.sequence, from: source)
        else { return nil }
        var type: UInt8 = 0
        var code: UInt8 = 0
        var size: UInt16 = 0
        switch message {
        case .echoReply(_, _, let payloadSize): size = UInt16(clamping: payloadSize)
        case .error(let t, let c, _): (type, code) = (t, c)
        default: break
        }
        return Frame.EchoReply(
            requestID: echo.requestID, outcome: outcome, icmpType: type, icmpCode: code, from: source, ttl: ttl, size: size, rttMicros: 0)
    }
}
