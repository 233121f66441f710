import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PosternCore
import PosternTunnel

#if canImport(Glibc)
    import Glibc
#endif

/// One TCP (or UDP) listening address served by several sockets (SO_REUSEPORT), each on its own
/// event loop, and a one-instruction classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that tells the
/// kernel which socket takes every new connection (UDP: every datagram). So a `tcp:` forward's users
/// are accepted, and a `udp:` forward's datagrams read, straight onto the loop of its mediator's
/// session, and relaying never crosses threads: NIO's
/// `ServerBootstrap` takes its child loop from a `MultiThreadedEventLoopGroup`'s round robin and
/// accepts no group of our own, and SwiftNIO has no way to move a channel between loops.
///
/// Changing the loop (`steer(to:)`) is one setsockopt when a mediator's session changes loops; the
/// connections themselves take no lock. With one socket (`--threads 1`) it is a plain listener:
/// no SO_REUSEPORT, no program.
final class SteeredListener {
    /// In the order they joined the kernel's reuseport group: index i is the one `steer(to: i)` picks.
    let channels: [Channel]
    private let claim: Claim?

    private init(channels: [Channel], claim: Claim?) {
        self.channels = channels
        self.claim = claim
    }

    var localAddress: SocketAddress? { channels.first?.localAddress }

    /// Binds `count` sockets to `address` one after the other (the first one's port for the rest,
    /// so port 0 works), `bootstrap(i)` making the i-th, then steers every connection to socket 0.
    static func bind(
        to address: SocketAddress, count: Int, on eventLoop: EventLoop, bootstrap: @escaping (Int) -> ServerBootstrap
    ) -> EventLoopFuture<SteeredListener> {
        bind(to: address, count: count, udp: false, on: eventLoop) { i, at, reusePort in
            guard reusePort else { return bootstrap(i).bind(to: at) }
            return bootstrap(i).serverChannelOption(Self.reusePort, value: 1).bind(to: at)
        }
    }

    /// The same for UDP (a `udp:` forward's sockets): the kernel runs the group's program for every
    /// datagram, so steering picks the socket, and so the loop, that reads each one (Linux applies
    /// SO_ATTACH_REUSEPORT_CBPF to UDP groups as to TCP ones, the program seeing the UDP payload).
    static func bind(
        to address: SocketAddress, count: Int, on eventLoop: EventLoop, datagram bootstrap: @escaping (Int) -> DatagramBootstrap
    ) -> EventLoopFuture<SteeredListener> {
        bind(to: address, count: count, udp: true, on: eventLoop) { i, at, reusePort in
            guard reusePort else { return bootstrap(i).bind(to: at) }
            return bootstrap(i).channelOption(Self.reusePort, value: 1).bind(to: at)
        }
    }

    private static let reusePort = ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT))

    /// `bindOne(i, address, reusePort)` binds the i-th socket, with SO_REUSEPORT set when asked.
    private static func bind(
        to address: SocketAddress, count: Int, udp: Bool, on eventLoop: EventLoop,
        bindOne: @escaping (Int, SocketAddress, Bool) -> EventLoopFuture<Channel>
    ) -> EventLoopFuture<SteeredListener> {
        guard count > 1 else {
            return bindOne(0, address, false).map { SteeredListener(channels: [$0], claim: nil) }
        }
        // SO_REUSEPORT would let a second listener of this process on the same port join the group
        // silently, where a plain socket fails with "address in use": keep that failure.
        guard let claim = Claim(address, udp: udp) else {
            return eventLoop.makeFailedFuture(IOError(errnoCode: EADDRINUSE, reason: "bind"))
        }
        // ...and so would it let another process's group (a second server started by mistake, of the
        // same user) share the port and take half of its connections: a plain socket bound first
        // fails there as the single-socket listener would. Sockets of this process's own listener
        // on the port that are still closing (a forward restarted by a reload) are waited for first.
        let closing = Self.closing.withLockedValue { $0[claim.port] ?? [] }
        var bound: [Channel] = []
        func next(_ i: Int, _ at: SocketAddress) -> EventLoopFuture<SteeredListener> {
            guard i < count else { return eventLoop.makeSucceededFuture(SteeredListener(channels: bound, claim: claim)) }
            return bindOne(i, at, true)
                .hop(to: eventLoop)
                .flatMap { channel in
                    bound.append(channel)
                    return next(i + 1, channel.localAddress ?? at)
                }
        }
        return EventLoopFuture.andAllComplete(closing, on: eventLoop)
            .flatMapThrowing {
                if let error = Self.heldElsewhere(address, udp: udp) { throw IOError(errnoCode: error, reason: "bind") }
            }
            .flatMap { next(0, address) }
            .flatMap { listener in listener.steer(to: 0).map { listener } }
            .flatMapErrorThrowing { error in
                for c in bound { c.close(promise: nil) }
                claim.release()
                throw error
            }
    }

    /// The errno of binding a plain socket (no SO_REUSEPORT) to `address`, or nil when that works: a
    /// socket of another process holds the port when it fails with EADDRINUSE. A TCP probe sets
    /// SO_REUSEADDR like NIO's listeners, so connections in TIME_WAIT from an earlier run do not count;
    /// it never listens, so nothing can connect to it in the moment it exists. Port 0 needs no probe.
    static func heldElsewhere(_ address: SocketAddress, udp: Bool) -> CInt? {
        guard let port = address.port, port != 0 else { return nil }
        let type = Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(Int32(address.protocol.rawValue), type, 0)
        guard fd >= 0 else { return errno }
        defer { Glibc.close(fd) }
        if !udp {
            var one: CInt = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        }
        let rc = address.withSockAddr { pointer, length in Glibc.bind(fd, pointer, socklen_t(length)) }
        return rc == 0 ? nil : errno
    }

    /// From now on the kernel hands every new connection to socket `index` (clamped to the range).
    @discardableResult
    func steer(to index: Int) -> EventLoopFuture<Void> {
        guard channels.count > 1 else { return channels[0].eventLoop.makeSucceededVoidFuture() }
        let k = UInt32(min(max(index, 0), channels.count - 1))
        return ReturnProgram.attach(returning: k, as: ReturnProgram.attachReuseportCBPF, to: channels[0])
    }

    /// Steers to socket `index` and logs a warning naming `what` (the forward or listener) when the
    /// kernel refuses; new connections then keep going where they went.
    func steer(to index: Int, logger: Logger, what: String) {
        steer(to: index).whenFailure { error in
            logger.warning("\(what): cannot steer \(self.kind) to the loop of its mediator's session: \(error)")
        }
    }

    /// Steers to the socket that runs on `loop` (a session's loop), or to the control loop's when
    /// none does.
    func steer(toLoopOf loop: EventLoop, logger: Logger, what: String) {
        let index = LoopPinning.acceptingLoop(
            sessionLoop: channels.firstIndex { $0.eventLoop === loop }, loops: channels.count)
        steer(to: index, logger: logger, what: what)
    }

    /// What the kernel hands to the sockets, for log lines.
    private var kind: String { (claim?.port ?? 0) < 0 ? "datagrams" : "connections" }

    /// Stops or resumes accepting on every socket (the connections wait in the kernel's backlog).
    func setAccepting(_ on: Bool) {
        for channel in channels {
            channel.setOption(ChannelOptions.autoRead, value: on).whenFailure { _ in }
            if on { channel.read() }
        }
    }

    func close() {
        for channel in channels { channel.close(promise: nil) }
        if let claim, claim.port != 0 {
            // Until they are closed, a new listener on the port waits for them before its probe.
            let done = EventLoopFuture.andAllComplete(channels.map(\.closeFuture), on: channels[0].eventLoop)
            Self.closing.withLockedValue { $0[claim.port, default: []].append(done) }
            done.whenComplete { _ in
                Self.closing.withLockedValue { closing in
                    closing[claim.port]?.removeAll { $0 === done }
                    if closing[claim.port]?.isEmpty == true { closing[claim.port] = nil }
                }
            }
        }
        claim?.release()
    }

    // MARK: - One steered listener per port in this process

    /// The ports this process listens on with SO_REUSEPORT (UDP ports as their negative), and on
    /// which addresses.
    private static let claimed = NIOLockedValueBox<[Int: [String]]>([:])

    /// Ports (as in `claimed`) of listeners closed whose sockets may still be open: when each set is.
    private static let closing = NIOLockedValueBox<[Int: [EventLoopFuture<Void>]]>([:])

    final class Claim {
        let port: Int
        let address: String

        /// Nil when another steered listener of this process holds the port on an overlapping
        /// address (the same, or either one the wildcard). Port 0 picks a fresh port: no claim needed.
        init?(_ socket: SocketAddress, udp: Bool = false) {
            let port = (socket.port ?? 0) * (udp ? -1 : 1)
            let address = socket.ipAddress ?? ""
            self.port = port
            self.address = address
            guard port != 0 else { return }
            let taken = SteeredListener.claimed.withLockedValue { claimed -> Bool in
                let holders = claimed[port] ?? []
                if holders.contains(where: { $0 == address || Self.isWildcard($0) || Self.isWildcard(address) }) { return true }
                claimed[port] = holders + [address]
                return false
            }
            if taken { return nil }
        }

        func release() {
            guard port != 0 else { return }
            SteeredListener.claimed.withLockedValue { claimed in
                if let i = claimed[port]?.firstIndex(of: address) { claimed[port]?.remove(at: i) }
                if claimed[port]?.isEmpty == true { claimed[port] = nil }
            }
        }

        static func isWildcard(_ a: String) -> Bool { a == "0.0.0.0" || a == "::" }
    }
}
