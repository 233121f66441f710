import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// `tcp:ADDR:PORT=NAME/HOST:PORT`: the server listens; each connection makes the mediator connect
/// to the target (OPEN+CONNECT in one CONNECT with port 0) and is relayed through the tunnel.
final class TCPForwardToMediator: Forward {
    let spec: ForwardSpec
    let counters = ForwardCounters()
    /// Each relayed connection's time from accept to the mediator's answer (set by `ServerService`).
    var connectLatency: (TimeAmount) -> Void = { _ in }
    private let registry: MediatorRegistry
    private var logger: Logger
    private let eventLoop: EventLoop
    private var channel: Channel?
    /// `--pcap`: each connection's traffic is recorded here too.
    var recorder: PcapRecorder?
    /// `ctl capture`: each connection accepted while it runs is recorded here too.
    private var capture: PcapRecorder?
    func startCapture(_ recorder: PcapRecorder) { capture = recorder }
    func stopCapture() { capture = nil }
    /// Stops accepting while this many connections wait for their CONNECT (the kernel's listen
    /// backlog holds the rest of a burst); set from the server's connect admission limit.
    var gate = AcceptGate(pauseAt: ConnectAdmission.Settings().limit)
    /// `rate=`: the buckets all the forward's connections share.
    private let rateLimit: ForwardRateLimit?
    /// Users turned away by `allow=`, for logging at 1, 10, 100…
    private var deniedLogged = 0
    /// The listen backlog: a burst waits here while the gate is shut (capped by net.core.somaxconn).
    static let backlog: Int32 = 4096

    init(spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, logger: Logger, now: @escaping () -> NIODeadline) {
        self.spec = spec
        self.rateLimit = spec.options.rate.map { ForwardRateLimit(bytesPerSecond: $0, now: now) }
        self.registry = registry
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Each connection picks the mediator's current session when it arrives: nothing to attach.
    func start() -> EventLoopFuture<Void> {
        ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: Self.backlog)
            .relayedStreamChildOptions()
            .childChannelInitializer { [self] child in
                // allow=: turned away before anything else happens, above all before any CONNECT.
                if let peer = Self.ipAndPort(child.remoteAddress)?.0, !spec.options.allows(peer) {
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
                for recorder in [recorder, capture].compactMap({ $0 }) {
                    if let tap = PcapStreamTap(channel: child, recorder: recorder) {
                        try? child.pipeline.syncOperations.addHandler(tap, position: .first)
                    }
                }
                return child.pipeline.addHandler(early).map { [self] in accepted(child, early) }
            }
            .bind(to: SocketAddress(spec.listenAddress))
            .map { [self] channel in
                self.channel = channel
                counters.listening = true
                logger.info("forward \(spec): listening on \(spec.listen)")
            }
    }

    func stop() {
        counters.listening = false
        channel?.close(promise: nil)
    }

    private func denied(_ child: Channel, _ peer: IPAddress) -> EventLoopFuture<Void> {
        counters.deniedBySource()
        deniedLogged += 1
        if deniedLogged.isWorthALogLine {
            logger.info("forward \(spec): connection from \(peer) refused: not in its allow= list (\(deniedLogged) so far)")
        }
        StreamRelay.abortiveClose(child)
        return child.eventLoop.makeSucceededVoidFuture()
    }

    static func proxyHeader(_ version: ProxyHeader.Version, _ child: Channel) -> [UInt8] {
        ProxyHeader.encode(version, source: ipAndPort(child.remoteAddress), destination: ipAndPort(child.localAddress))
    }

    static func ipAndPort(_ a: SocketAddress?) -> (IPAddress, UInt16)? {
        guard let text = a?.ipAddress, let ip = IPAddress(text), let port = a?.port else { return nil }
        return (ip, UInt16(truncatingIfNeeded: port))
    }

    private func setAccepting(_ on: Bool) {
        guard let channel else { return }
        logger.debug("forward \(spec): \(on ? "accepting again" : "not accepting while \(gate.waiting) connects wait")")
        channel.setOption(ChannelOptions.autoRead, value: on).whenFailure { _ in }
        if on { channel.read() }
    }

    private func accepted(_ child: Channel, _ early: EarlyInput) {
        guard let link = registry.link(spec.mediator) else {
            logger.warning("forward \(spec): mediator '\(spec.mediator)' is not connected; resetting the connection")
            counters.refused()
            StreamRelay.abortiveClose(child)
            return
        }
        let peer = child.remoteAddress?.display ?? "?"
        let began = NIODeadline.now()
        if gate.arrived() { setAccepting(false) }
        link.connect(portID: 0, to: spec.target, owner: "forward \(spec)", isWanted: { !early.userLeft }).whenComplete {
            [self] result in
            if gate.settled() { setAccepting(true) }
            connectLatency(.now() - began)
            switch result {
            case .success(let done):
                link.relay(child, connected: done, early: early, counters: counters)
            case .failure(let error):
                counters.failed(error)
                // The user sees an RST: the closest a forward can come to "connection refused".
                logger.info("forward \(spec): connection from \(peer) not relayed: \(error)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "connect-failed", detail: "\(spec.target): \(error)"))
                StreamRelay.abortiveClose(child)
            }
        }
    }
}
