import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// `udp:NAME/ADDR:PORT=HOST:PORT`: the mediator opens a UDP port on its LAN; each LAN peer's datagrams
/// reach the target from a server socket of their own, and the target's replies go back to that peer.
/// Each such socket is connected to the target, and what it receives from anyone else is dropped
/// too, so a stranger spraying the server's ports reaches no LAN peer. The flows are a
/// `DatagramFlowTable` per mediator port, at most `limits.maxFlows` of them (`--udp-max-flows`);
/// the datagrams travel the session's `DatagramPath` (`MediatorLink.datagramPath`: a UDP channel while
/// one is up, DATAGRAM frames on the TCP channel otherwise).
///
/// The mediator's port (`MediatorPort`: its flows, their sockets, the sweep) lives on the loop of the
/// session that opened it (`--threads`): the flows' sockets are made there, so a datagram never
/// crosses threads. The forward itself is the control loop's; what both sides touch (the current
/// port, whether it stopped, the capture) sits behind a lock taken once per port or flow.
final class UDPForwardFromMediator: Forward {
    /// Binds a server-side socket for one flow with `handler` in its pipeline, on `loop`.
    typealias SocketOpener = (_ target: SocketAddress, _ handler: FlowSocket, _ loop: EventLoop) -> EventLoopFuture<Channel>

    /// The mediator's port, seen from the server: its LAN peers' flows. Lives on `eventLoop`, its
    /// session's: every method runs there.
    final class MediatorPort: DatagramPathReceiver {
        let portID: UInt32
        let path: DatagramPath
        let eventLoop: EventLoop
        weak var forward: UDPForwardFromMediator?
        /// The session's link that opened it (none in tests that feed a path directly).
        fileprivate weak var link: MediatorLink?
        var flows: DatagramFlowTable<Endpoint, Channel>
        /// `flows.count`, for the admin API on the control loop.
        fileprivate let flowCount = ManagedAtomic<Int>(0)
        /// Flow sockets written to in this loop pass, flushed together at its end.
        fileprivate var unflushed: [ObjectIdentifier: Channel] = [:]
        fileprivate var sweeper: RepeatedTask?
        /// The target's address (resolved once per port when the target is a name).
        fileprivate var target: SocketAddress?

        init(
            portID: UInt32, path: DatagramPath, eventLoop: EventLoop, limits: DatagramFlowLimits, target: SocketAddress?,
            forward: UDPForwardFromMediator
        ) {
            self.portID = portID
            self.path = path
            self.eventLoop = eventLoop
            self.forward = forward
            self.target = target
            self.flows = DatagramFlowTable(limits: limits)
        }

        func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
            forward?.fromLAN(bytes, peer: peer, on: self)
        }

        func datagramPathClosed(portID: UInt32) {
            eventLoop.assertInEventLoop()
            closeFlows()
            forward?.lost(self)
        }

        fileprivate func closeFlows() {
            sweeper?.cancel()
            sweeper = nil
            for closed in flows.removeAll() { closed.handle?.close(promise: nil) }
            countFlows()
        }

        fileprivate func countFlows() { flowCount.store(flows.count, ordering: .relaxed) }

        /// Closes the flows idle for longer than the idle timeout, and their sockets.
        func sweep(now: NIODeadline) {
            eventLoop.assertInEventLoop()
            for closed in flows.sweep(now: now) { closed.handle?.close(promise: nil) }
            countFlows()
        }
    }

    /// One LAN peer's server-side socket: what the target sends it goes back to that peer; what
    /// anyone else sends it is dropped (the kernel filters a connected socket already; this holds
    /// for any socket the opener gives).
    final class FlowSocket: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let id: DatagramFlowID
        let lanPeer: Endpoint
        unowned let port: MediatorPort

        init(id: DatagramFlowID, lanPeer: Endpoint, port: MediatorPort) {
            self.id = id
            self.lanPeer = lanPeer
            self.port = port
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            port.forward?.fromTarget(envelope.data, sender: envelope.remoteAddress, on: self)
        }
    }

    let spec: ForwardSpec
    let counters = ForwardCounters()
    private let registry: MediatorRegistry
    private var logger: Logger
    /// The control loop: the forward's own loop, and the recorders'.
    private let eventLoop: EventLoop
    private let limits: DatagramFlowLimits
    private let now: () -> NIODeadline
    private let openSocket: SocketOpener
    /// The target when it is an address (set once, in `init`).
    private let target: SocketAddress?
    /// `--pcap`: the datagrams each flow's socket exchanges with the target are recorded here too
    /// (set before `start`; only flows on the control loop record, the recorder being its own).
    var recorder: PcapRecorder?

    /// What the control loop and the port's loop share.
    private struct Shared {
        var current: MediatorPort?
        var stopped = false
        /// `ctl capture`: the flows that begin while it runs are recorded here too.
        var capture: PcapRecorder?
    }
    private let shared = NIOLockedValueBox(Shared())

    /// The mediator's port of the current session.
    var current: MediatorPort? { shared.withLockedValue { $0.current } }

    func startCapture(_ recorder: PcapRecorder) { shared.withLockedValue { $0.capture = recorder } }
    func stopCapture() { shared.withLockedValue { $0.capture = nil } }

    init(
        spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, limits: DatagramFlowLimits,
        now: @escaping () -> NIODeadline, logger: Logger, openSocket: SocketOpener? = nil
    ) {
        self.spec = spec
        self.registry = registry
        self.eventLoop = eventLoop
        self.limits = limits
        self.now = now
        self.logger = logger
        self.openSocket = openSocket ?? Self.bindSocket
        if case .ip(let ip) = spec.target.host {
            target = SocketAddress(ip, port: spec.target.port)
        } else {
            target = nil
        }
        let shared = shared
        counters.openFlows = { shared.withLockedValue { $0.current }?.flowCount.load(ordering: .relaxed) ?? 0 }
    }

    /// A socket on an ephemeral port, connected to the target: the kernel delivers it nothing from
    /// any other address.
    private static func bindSocket(_ target: SocketAddress, _ handler: FlowSocket, _ loop: EventLoop) -> EventLoopFuture<Channel> {
        DatagramBootstrap(group: loop)
            .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramAllocator)
            .channelInitializer { channel in
                DatagramChecksumFilter.attach(to: channel).flatMap { channel.pipeline.addHandler(handler) }
            }
            .connect(to: target)
    }

    func start() -> EventLoopFuture<Void> { eventLoop.makeSucceededVoidFuture() }

    /// Its port is opened on the session's loop, whichever that is.
    var runsOnAnyLoop: Bool { true }

    /// Removed by a reload: its port on the mediator closes and its flows' sockets with it.
    func stop() {
        counters.listening = false
        let port = shared.withLockedValue { s -> MediatorPort? in
            s.stopped = true
            defer { s.current = nil }
            return s.current
        }
        guard let port else { return }
        let close = {
            port.path.detach(portID: port.portID)
            port.closeFlows()
            if let link = port.link, link.isOpen { link.close(portID: port.portID).whenFailure { _ in } }
        }
        if port.eventLoop.inEventLoop { close() } else { port.eventLoop.execute(close) }
    }

    func detach(_ link: MediatorLink) { counters.listening = false }

    /// Asks for the mediator's port with REDIRECT (§5.2), which `--allow-redirect` permits; a mediator
    /// that refuses it by policy, or is too old to know it, is asked with OPEN instead, which it
    /// serves with `--allow-listen` (how these forwards worked before REDIRECT existed). Either way
    /// the datagrams take the session's datagram path: the UDP channel while it is up. Runs on the
    /// session's loop (called from the control loop, it hops there).
    func attach(_ link: MediatorLink) {
        link.onLoop { [self] in attachOnLoop(link) }
    }

    private func attachOnLoop(_ link: MediatorLink) {
        let listen = spec.listenAddress
        let owner = "forward \(spec)"
        var how = "redirect"
        link.redirect(address: listen.address, port: listen.port, exact: true, owner: owner).flatMapError { error in
            guard let refused = error as? OperationError, refused.code == .deniedByPolicy || refused.code == .notSupported,
                link.isOpen
            else { return link.session.eventLoop.makeFailedFuture(error) }
            how = "open (the mediator refused redirect: \(refused.message))"
            return link.open(.udp, address: listen.address, port: listen.port, exact: true, owner: owner)
        }.whenComplete { [self] result in
            switch result {
            case .success(let done):
                guard let port = attach(path: link.datagramPath, portID: done.portID, on: link.eventLoop) else {
                    link.close(portID: done.portID).whenFailure { _ in }
                    return
                }
                port.link = link
                counters.listening = link.isOpen
                counters.failure = nil
                logger.info("forward \(spec): mediator '\(spec.mediator)' receives datagrams on \(done.local) by \(how)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "listening", port: done.portID, detail: "forward \(spec)"))
            case .failure(let error):
                counters.listening = false
                counters.failure = "mediator '\(spec.mediator)' cannot open \(spec.listen): \(error)"
                logger.error("forward \(spec): mediator '\(spec.mediator)' cannot open \(spec.listen): \(error)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-failed", detail: "\(spec): \(error)"))
            }
        }
    }

    /// The mediator's port is open: its datagrams arrive on `path`, on `loop` (the caller's, the
    /// session's; the control loop when nil). Nil when the forward was stopped meanwhile.
    @discardableResult
    func attach(path: DatagramPath, portID: UInt32, on loop: EventLoop? = nil) -> MediatorPort? {
        let loop = loop ?? eventLoop
        loop.assertInEventLoop()
        let port = MediatorPort(portID: portID, path: path, eventLoop: loop, limits: limits, target: target, forward: self)
        let taken = shared.withLockedValue { s -> Bool in
            guard !s.stopped else { return false }
            s.current = port
            return true
        }
        guard taken else { return nil }
        path.attach(portID: portID, port)
        port.sweeper = loop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [weak port, now] _ in
            port?.sweep(now: now())
        }
        return port
    }

    /// `port`'s session ended.
    fileprivate func lost(_ port: MediatorPort) {
        shared.withLockedValue { s in
            if s.current === port { s.current = nil }
        }
    }

    private func resolveTarget(for port: MediatorPort) -> EventLoopFuture<SocketAddress> {
        if let target = port.target { return port.eventLoop.makeSucceededFuture(target) }
        let host = spec.target.host.connectableString
        let number = Int(spec.target.port)
        return NIOThreadPool.singleton.runIfActive(eventLoop: port.eventLoop) {
            try SocketAddress.makeAddressResolvingHost(host, port: number)
        }.map { address in
            port.target = address
            return address
        }
    }

    fileprivate func fromLAN(_ bytes: ByteBuffer, peer: Endpoint, on port: MediatorPort) {
        port.eventLoop.assertInEventLoop()
        counters.datagramFromMediator(bytes.readableBytes)
        switch port.flows.arrived(bytes, from: peer, now: now()) {
        case .send(let channel):
            guard let target = port.target else { return }  // set before any flow opened
            // A connected socket takes only its peer's address, exactly as the kernel reports it.
            channel.write(AddressedEnvelope(remoteAddress: channel.remoteAddress ?? target, data: bytes), promise: nil)
            flushAtEndOfPass(channel, on: port)
        case .open(let id):
            port.countFlows()
            open(id, for: peer, on: port)
        case .overFlowLimit(let log):
            if log {
                logger.warning(
                    "forward \(spec): holds its limit of \(port.flows.limits.maxFlows) UDP flows (--udp-max-flows); datagrams from new LAN peers such as \(peer) are dropped (\(port.flows.drops[.flowLimit]) so far)"
                )
            }
        case .queued, .dropped:
            break
        }
    }

    private func open(_ id: DatagramFlowID, for peer: Endpoint, on port: MediatorPort) {
        let socket = FlowSocket(id: id, lanPeer: peer, port: port)
        let loop = port.eventLoop
        resolveTarget(for: port).flatMap { [self] target in
            openSocket(target, socket, loop).map { ($0, target) }
        }.hop(to: loop).whenComplete { [self] result in
            switch result {
            case .success(let (channel, target)):
                guard let backlog = port.flows.opened(id, handle: channel, now: now()) else {
                    channel.close(promise: nil)  // the flow ended while its socket was being bound
                    return
                }
                counters.flowOpened()
                // --pcap: the tap goes first, before the backlog is written, so it sees all the socket does.
                // The recorders are the control loop's: a flow elsewhere (its session is on its way
                // there after `ctl capture`) is not recorded.
                if loop === eventLoop {
                    for recorder in [recorder, shared.withLockedValue({ $0.capture })].compactMap({ $0 }) {
                        try? channel.pipeline.syncOperations.addHandler(PcapDatagramTap(recorder: recorder), position: .first)
                    }
                }
                let remote = channel.remoteAddress ?? target
                for bytes in backlog { channel.write(AddressedEnvelope(remoteAddress: remote, data: bytes), promise: nil) }
                channel.flush()
            case .failure(let error):
                counters.failed(error)
                logger.info("forward \(spec): cannot relay datagrams from \(peer) to \(spec.target): \(error)")
                port.flows.openFailed(id)
                port.countFlows()
            }
        }
    }

    /// Flushes `channel` once, after everything the event loop's current pass wrote to it: a batch of
    /// datagrams read from the UDP channel leaves each flow's socket in one `sendmmsg`, not one
    /// `sendmsg` each (docs/architecture.md, "UDP batching"; `DatagramWriteBatcher` does the same for
    /// one socket).
    private func flushAtEndOfPass(_ channel: Channel, on port: MediatorPort) {
        if port.unflushed.isEmpty {
            port.eventLoop.execute { [port] in
                let channels = port.unflushed.values
                port.unflushed.removeAll(keepingCapacity: true)
                for channel in channels { channel.flush() }
            }
        }
        port.unflushed[ObjectIdentifier(channel)] = channel
    }

    fileprivate func fromTarget(_ bytes: ByteBuffer, sender: SocketAddress, on socket: FlowSocket) {
        let port = socket.port
        port.eventLoop.assertInEventLoop()
        guard let target = port.target, Self.sameHost(sender, target) else {
            port.flows.drops.count(.unsolicited)
            return
        }
        port.flows.touch(socket.id, now: now())
        counters.datagramToMediator(bytes.readableBytes)
        port.path.offer(portID: port.portID, peer: socket.lanPeer, bytes: bytes, drops: &port.flows.drops)
    }

    /// Whether `a` and `b` are one address and port, an IPv4 address and its mapped form alike.
    private static func sameHost(_ a: SocketAddress, _ b: SocketAddress) -> Bool {
        guard let x = a.endpoint, let y = b.endpoint, case .ip(let xa) = x.host, case .ip(let ya) = y.host else { return false }
        return x.port == y.port && xa.normalized == ya.normalized
    }

    /// Closes the current port's flows idle for longer than the idle timeout (on its loop).
    func sweep(now: NIODeadline) {
        current?.sweep(now: now)
    }
}
