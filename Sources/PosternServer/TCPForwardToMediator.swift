import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// `tcp:ADDR:PORT=NAME/HOST:PORT`: the server listens; each connection makes the mediator connect
/// to the target (OPEN+CONNECT in one CONNECT with port 0) and is relayed through the tunnel.
///
/// With `--threads` above 1 it listens with one socket per event loop and steers the kernel to the
/// one on the loop of its mediator's session (`SteeredListener`): a user's connection is accepted,
/// relayed and closed on that loop, next to the session, and never crosses threads. What the
/// connections of the forward share is per connection behind a lock (`shared`), or per loop (`rate=`).
final class TCPForwardToMediator: Forward {
    let spec: ForwardSpec
    let counters = ForwardCounters()
    /// Each relayed connection's time from accept to the mediator's answer (set by `ServerService`).
    var connectLatency: (TimeAmount) -> Void = { _ in }
    private let registry: MediatorRegistry
    private var logger: Logger
    private let eventLoop: EventLoop
    /// The server's loops; the forward listens on each when there are several.
    private let loops: [EventLoop]
    /// Set once bound, on the control loop; read by the accept gate on the session's loop too.
    private var listener: SteeredListener? {
        get { shared.withLockedValue { $0.listener } }
        set { shared.withLockedValue { $0.listener = newValue } }
    }
    /// Where it listens (port 0 picks one).
    var boundAddress: SocketAddress? { listener?.localAddress }
    /// `--pcap`: each connection's traffic is recorded here too (set before `start`; the server runs
    /// on one loop when it is on, docs/architecture.md "Threads").
    var recorder: PcapRecorder?
    /// What the connections share across loops; each takes the lock once or twice, never per packet.
    private struct Shared {
        /// `ctl capture`: each connection accepted while it runs is recorded here too.
        var capture: PcapRecorder?
        /// Stops accepting while this many connections wait for their CONNECT (the kernel's listen
        /// backlog holds the rest of a burst); set from the server's connect admission limit.
        var gate = AcceptGate(pauseAt: ConnectAdmission.Settings().limit)
        /// Users turned away by `allow=`, for logging at 1, 10, 100…
        var deniedLogged = 0
        var listener: SteeredListener?
    }
    private let shared = NIOLockedValueBox(Shared())
    func startCapture(_ recorder: PcapRecorder) { shared.withLockedValue { $0.capture = recorder } }
    func stopCapture() { shared.withLockedValue { $0.capture = nil } }
    var gate: AcceptGate {
        get { shared.withLockedValue { $0.gate } }
        set { shared.withLockedValue { $0.gate = newValue } }
    }
    /// `rate=`: the buckets the forward's connections share, one pair per loop. A forward's
    /// connections all live on its mediator's session loop, so the limit holds for the forward as a
    /// whole (only while a mediator's old and new session overlap could two loops each spend it).
    private let rateLimits: [ForwardRateLimit]
    /// Who owns the mediator's ports of its connections (`/v1/status`): made once, not per connection.
    private let owner: String
    /// The listen backlog: a burst waits here while the gate is shut (capped by net.core.somaxconn).
    static let backlog: Int32 = 4096

    init(
        spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, loops: [EventLoop]? = nil, logger: Logger,
        now: @escaping () -> NIODeadline
    ) {
        self.spec = spec
        self.owner = "forward \(spec)"
        let loops = loops ?? [eventLoop]
        self.loops = loops
        self.rateLimits = spec.options.rate.map { rate in loops.map { _ in ForwardRateLimit(bytesPerSecond: rate, now: now) } } ?? []
        self.registry = registry
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Each connection picks the mediator's current session when it arrives; `attach` only steers
    /// new connections to that session's loop.
    func start() -> EventLoopFuture<Void> {
        SteeredListener.bind(to: SocketAddress(spec.listenAddress), count: loops.count, on: eventLoop) { [self] i in
            bootstrap(on: loops[i], rateLimit: rateLimits.isEmpty ? nil : rateLimits[i])
        }
        .map { [self] listener in
            self.listener = listener
            counters.listening = true
            // Its mediator may have attached while it was binding.
            if let link = registry.link(spec.mediator) { attach(link) }
            logger.info("forward \(spec): listening on \(spec.listen)")
        }
    }

    /// Its connections are made on the session's loop, whichever that is.
    var runsOnAnyLoop: Bool { true }

    func attach(_ link: MediatorLink) {
        listener?.steer(toLoopOf: link.eventLoop, logger: logger, what: "forward \(spec)")
    }

    /// New connections are accepted onto loop `index` from now on.
    func steer(toLoop index: Int) {
        listener?.steer(to: index, logger: logger, what: "forward \(spec)")
    }

    private func bootstrap(on loop: EventLoop, rateLimit: ForwardRateLimit?) -> ServerBootstrap {
        ServerBootstrap(group: loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: Self.backlog)
            .relayedStreamChildOptions()
            .childChannelInitializer { [self] child in
                do {
                    try child.setRelayedStreamOptions()
                } catch {
                    return child.eventLoop.makeFailedFuture(error)
                }
                // allow=: turned away before anything else happens, above all before any CONNECT.
                // Without the option, the peer's address is not even formatted and parsed back.
                if !spec.options.allow.isEmpty, let peer = Self.ipAndPort(child.remoteAddress)?.0, !spec.options.allows(peer) {
                    return denied(child, peer)
                }
                // In place from the start: NIO drains a socket to its end by itself when the peer's
                // FIN arrives, read() or not, so without a handler here a request sent with its FIN
                // before the mediator has connected would fall off the pipeline.
                let early = EarlyInput()
                if let version = spec.options.proxy {
                    // The first bytes of the stream: the relay sends them before any of the user's.
                    early.prepend(child.allocator.buffer(bytes: Self.proxyHeader(version, child)))
                }
                if let rateLimit {
                    try? child.pipeline.syncOperations.addHandler(RateLimitHandler(limit: rateLimit), position: .first)
                }
                for recorder in [recorder, shared.withLockedValue { $0.capture }] {
                    if let recorder, let tap = PcapStreamTap(channel: child, recorder: recorder) {
                        try? child.pipeline.syncOperations.addHandler(tap, position: .first)
                    }
                }
                do {
                    try child.pipeline.syncOperations.addHandler(early)
                } catch {
                    return child.eventLoop.makeFailedFuture(error)
                }
                accepted(child, early)
                return child.eventLoop.makeSucceededVoidFuture()
            }
    }

    func stop() {
        counters.listening = false
        listener?.close()
    }

    private func denied(_ child: Channel, _ peer: IPAddress) -> EventLoopFuture<Void> {
        counters.deniedBySource()
        let deniedLogged = shared.withLockedValue { s -> Int in
            s.deniedLogged += 1
            return s.deniedLogged
        }
        if deniedLogged.isWorthALogLine {
            logger.info("forward \(spec): connection from \(peer) refused: not in its allow= list (\(deniedLogged) so far)")
        }
        StreamRelay.abortiveClose(child)
        return child.eventLoop.makeSucceededVoidFuture()
    }

    /// `ctl events` while someone follows it: the connection relayed, and its end with the bytes it
    /// carried, so the stream shows a forward's traffic as it happens (not kept in the history).
    private func follow(_ child: Channel, _ relay: StreamRelay, from peer: SocketAddress?, port: UInt32) {
        let events = registry.events
        let mediator = spec.mediator
        let forward = spec.text
        let from = peer?.display ?? "?"
        events.post(
            ServerEvent(mediator: mediator, kind: "forward-connection", port: port, detail: "\(forward): from \(from)"), keep: false)
        child.closeFuture.whenComplete { _ in
            events.post(
                ServerEvent(
                    mediator: mediator, kind: "forward-connection-closed", port: port,
                    detail: "\(forward): from \(from), \(relay.bytesToTunnel) bytes to the mediator, \(relay.bytesFromTunnel) from it"),
                keep: false)
        }
    }

    static func proxyHeader(_ version: ProxyHeader.Version, _ child: Channel) -> [UInt8] {
        ProxyHeader.encode(version, source: ipAndPort(child.remoteAddress), destination: ipAndPort(child.localAddress))
    }

    static func ipAndPort(_ a: SocketAddress?) -> (IPAddress, UInt16)? {
        guard let text = a?.ipAddress, let ip = IPAddress(text), let port = a?.port else { return nil }
        return (ip, UInt16(truncatingIfNeeded: port))
    }

    private func setAccepting(_ on: Bool, waiting: Int) {
        guard let listener else { return }
        logger.debug("forward \(spec): \(on ? "accepting again" : "not accepting while \(waiting) connects wait")")
        listener.setAccepting(on)
    }

    private func accepted(_ child: Channel, _ early: EarlyInput) {
        guard let link = registry.link(spec.mediator) else {
            logger.warning("forward \(spec): mediator '\(spec.mediator)' is not connected; resetting the connection")
            counters.refused()
            StreamRelay.abortiveClose(child)
            return
        }
        guard link.eventLoop === child.eventLoop else {
            // Accepted on the loop of the mediator's previous session, in the moment its new one
            // (on another loop) was attached and before the kernel was steered there.
            logger.info(
                "forward \(spec): the connection arrived on another loop than mediator '\(spec.mediator)''s new session; resetting it")
            counters.refused()
            StreamRelay.abortiveClose(child)
            return
        }
        // Formatted only for the log line of a failure (NIO forgets the address once the socket closes).
        let peer = child.remoteAddress
        let began = NIODeadline.now()
        let pause = shared.withLockedValue { s in (s.gate.arrived(), s.gate.waiting) }
        if pause.0 { setAccepting(false, waiting: pause.1) }
        // Pipelined (docs/protocol.md §5.3), when the mediator takes it: the relay starts as the
        // CONNECT goes out, so the user's first bytes travel right behind it, not after DONE. Not
        // before: a user waiting in the admission queue is not read.
        var relay: StreamRelay?
        let pipelined = MediatorLink.PipelinedConnect(
            sent: { [counters] id in
                if let relay { return relay.retry(as: id) }
                let r = link.makeRelay(portID: id, counters: counters, pipelining: .sendsBeforeDone)
                relay = r
                // On the child's loop (the session's, checked above): added at once, without a
                // future and its callbacks per connection.
                do {
                    try child.pipeline.syncOperations.addHandler(r)
                    early.handOver()
                } catch {
                    // The user is gone already: the mediator gives up its connect on the RESET.
                    r.resetBoth(code: .connectionReset, how: "the connection closed before its relay joined")
                    child.close(promise: nil)
                }
            },
            requeued: { relay?.pauseForRetry() })
        link.connect(
            portID: 0, to: spec.target, owner: owner, isWanted: { relay?.isLive ?? !early.userLeft }, pipelined: pipelined
        ).whenComplete {
            [self] result in
            if shared.withLockedValue({ $0.gate.settled() }) { setAccepting(true, waiting: 0) }
            connectLatency(.now() - began)
            switch result {
            case .success(let done):
                let joined: StreamRelay?
                if let relay {
                    link.confirm(relay, counters: counters)
                    joined = relay.isLive ? relay : nil
                } else {
                    joined = link.relay(child, connected: done, early: early, counters: counters)
                }
                if let joined, registry.events.isFollowed { follow(child, joined, from: peer, port: done.portID) }
            case .failure(let error):
                // A pipelined port its user (or a rule) already ended: nobody is left to tell, and the
                // FAILED is only the mediator's answer to that RESET.
                if let relay, !relay.isLive { return }
                counters.failed(error)
                // The user sees an RST: the closest a forward can come to "connection refused".
                logger.info("forward \(spec): connection from \(peer?.display ?? "?") not relayed: \(error)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "connect-failed", detail: "\(spec.target): \(error)"))
                if let relay {
                    // What it sent is dropped by the mediator, never written (§5.3); the user gets an RST.
                    relay.abandon(how: "connect failed: \(error)")
                } else {
                    StreamRelay.abortiveClose(child)
                }
            }
        }
    }
}
