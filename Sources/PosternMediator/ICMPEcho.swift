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
/// with the reason in words. Each request has a socket of its own, so answers never cross; the
/// blocking wait runs on a small pool of its own, never on the event loop.
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
        var capabilities: MediatorEnvironment.Capabilities = [.echoOffered]
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

    struct Failure: Error, CustomStringConvertible {
        var code: ErrorCode
        var errno: Int32
        var description: String
    }

    /// The blocking exchange: open, send, wait for the matching answer until the timeout.
    private static func run(_ echo: Frame.Echo, mode: Mode) throws -> Frame.EchoReply {
        guard case .v4(let destination) = echo.destination else {
            throw Failure(code: .notSupported, errno: 0, description: "ICMP echo to IPv6 destinations is not supported in this version")
        }
        let raw: Bool
        switch mode {
        case .datagram: raw = false
        case .raw: raw = true
        case .unavailable(let why): throw Failure(code: .notSupported, errno: 0, description: why)
        }
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
                    icmpCode: e == ENETUNREACH ? 0 : 1, from: echo.destination, ttl: 0, size: 0, rttMicros: 0)
            }
            throw Failure(
                code: ErrorCode(errno: e), errno: e, description: "sending the echo request failed: \(String(cString: strerror(e)))")
        }
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
                var info = postern_icmp_received()
                let n = buffer.withUnsafeMutableBytes { postern_icmp_recv(fd, $0.baseAddress, $0.count, Int32(errqueue), &info) }
                guard n >= 0 else { continue }
                let bytes = Array(buffer[0..<n])
                let from = IPAddress.v4(UInt32(bigEndian: info.from))
                guard let answer = Self.answer(bytes, info: info, from: from, raw: raw, echo: echo, identifier: identifier) else {
                    continue
                }
                let rtt = (NIODeadline.now() - sentAt).nanoseconds / 1000
                var reply = answer
                reply.rttMicros = UInt32(clamping: rtt)
                return reply
            }
        }
        return Frame.EchoReply(
            requestID: echo.requestID, outcome: .noAnswer, icmpType: 0, icmpCode: 0, from: echo.destination, ttl: 0, size: 0,
            rttMicros: UInt32(clamping: timeout / 1000))
    }

    /// The answer to `echo` that `bytes` hold, or nil when they answer something else.
    private static func answer(
        _ bytes: [UInt8], info: postern_icmp_received, from: IPAddress, raw: Bool, echo: Frame.Echo, identifier: UInt16?
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
        guard let outcome = message.outcome(forEchoTo: echo.destination, identifier: identifier, sequence: echo.sequence, from: source)
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
