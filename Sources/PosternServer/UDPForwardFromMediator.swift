import Logging
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
final class UDPForwardFromMediator: Forward {
    /// Binds a server-side socket for one flow with `handler` in its pipeline.
    typealias SocketOpener = (_ target: SocketAddress, _ handler: FlowSocket) -> EventLoopFuture<Channel>

    /// The mediator's port, seen from the server: its LAN peers' flows.
    final class MediatorPort: DatagramPathReceiver {
        let portID: UInt32
        let path: DatagramPath
        weak var forward: UDPForwardFromMediator?
        var flows: DatagramFlowTable<Endpoint, Channel>

        init(portID: UInt32, path: DatagramPath, limits: DatagramFlowLimits, forward: UDPForwardFromMediator) {
            self.portID = portID
            self.path = path
            self.forward = forward
            self.flows = DatagramFlowTable(limits: limits)
        }

        func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
            forward?.fromLAN(bytes, peer: peer, on: self)
        }

        func datagramPathClosed(portID: UInt32) {
            for closed in flows.removeAll() { closed.handle?.close(promise: nil) }
            if forward?.current === self { forward?.current = nil }
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
    private let eventLoop: EventLoop
    /// Flow sockets written to in this loop pass, flushed together at its end.
    private var unflushed: [ObjectIdentifier: Channel] = [:]
    private let limits: DatagramFlowLimits
    private let now: () -> NIODeadline
    private let openSocket: SocketOpener
    fileprivate(set) var current: MediatorPort?
    private var sweeper: RepeatedTask?
    private var target: SocketAddress?
    /// `--pcap`: the datagrams each flow's socket exchanges with the target are recorded here too.
    var recorder: PcapRecorder?
    /// `ctl capture`: the flows that begin while it runs are recorded here too.
    private var capture: PcapRecorder?
    func startCapture(_ recorder: PcapRecorder) { capture = recorder }
    func stopCapture() { capture = nil }

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
        self.openSocket = openSocket ?? Self.bindSocket(on: eventLoop)
        if case .ip(let ip) = spec.target.host { target = SocketAddress(ip, port: spec.target.port) }
        counters.openFlows = { [weak self] in self?.current?.flows.count ?? 0 }
    }

    /// A socket on an ephemeral port, connected to the target: the kernel delivers it nothing from
    /// any other address.
    private static func bindSocket(on eventLoop: EventLoop) -> SocketOpener {
        { target, handler in
            DatagramBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramAllocator)
                .channelInitializer { channel in
                    DatagramChecksumFilter.attach(to: channel).flatMap { channel.pipeline.addHandler(handler) }
                }
                .connect(to: target)
        }
    }

    func start() -> EventLoopFuture<Void> {
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [self] _ in sweep(now: now()) }
        return eventLoop.makeSucceededVoidFuture()
    }

    private weak var link: MediatorLink?
    private var stopped = false

    /// Removed by a reload: its port on the mediator closes and its flows' sockets with it.
    func stop() {
        stopped = true
        counters.listening = false
        sweeper?.cancel()
        guard let port = current else { return }
        current = nil
        port.path.detach(portID: port.portID)
        for closed in port.flows.removeAll() { closed.handle?.close(promise: nil) }
        if let link, link.isOpen { link.close(portID: port.portID).whenFailure { _ in } }
    }

    func detach(_ link: MediatorLink) { counters.listening = false }

    /// Asks for the mediator's port with REDIRECT (§5.2), which `--allow-redirect` permits; a mediator
    /// that refuses it by policy, or is too old to know it, is asked with OPEN instead, which it
    /// serves with `--allow-listen` (how these forwards worked before REDIRECT existed). Either way
    /// the datagrams take the session's datagram path: the UDP channel while it is up.
    func attach(_ link: MediatorLink) {
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
                guard !stopped else {
                    link.close(portID: done.portID).whenFailure { _ in }
                    return
                }
                self.link = link
                attach(path: link.datagramPath, portID: done.portID)
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

    /// The mediator's port is open: its datagrams arrive on `path`.
    @discardableResult
    func attach(path: DatagramPath, portID: UInt32) -> MediatorPort {
        let port = MediatorPort(portID: portID, path: path, limits: limits, forward: self)
        current = port
        path.attach(portID: portID, port)
        return port
    }

    private func resolveTarget() -> EventLoopFuture<SocketAddress> {
        if let target { return eventLoop.makeSucceededFuture(target) }
        let host = spec.target.host.connectableString
        let port = Int(spec.target.port)
        return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
            try SocketAddress.makeAddressResolvingHost(host, port: port)
        }.map { [self] address in
            target = address
            return address
        }
    }

    fileprivate func fromLAN(_ bytes: ByteBuffer, peer: Endpoint, on port: MediatorPort) {
        counters.datagramBytesFromMediator &+= UInt64(bytes.readableBytes)
        switch port.flows.arrived(bytes, from: peer, now: now()) {
        case .send(let channel):
            guard let target else { return }  // set before any flow opened
            // A connected socket takes only its peer's address, exactly as the kernel reports it.
            channel.write(AddressedEnvelope(remoteAddress: channel.remoteAddress ?? target, data: bytes), promise: nil)
            flushAtEndOfPass(channel)
        case .open(let id):
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
        resolveTarget().flatMap { [self] target in
            openSocket(target, socket).map { ($0, target) }
        }.whenComplete { [self] result in
            switch result {
            case .success(let (channel, target)):
                guard let backlog = port.flows.opened(id, handle: channel, now: now()) else {
                    channel.close(promise: nil)  // the flow ended while its socket was being bound
                    return
                }
                counters.flowOpened()
                // --pcap: the tap goes first, before the backlog is written, so it sees all the socket does.
                for recorder in [recorder, capture].compactMap({ $0 }) {
                    try? channel.pipeline.syncOperations.addHandler(PcapDatagramTap(recorder: recorder), position: .first)
                }
                let remote = channel.remoteAddress ?? target
                for bytes in backlog { channel.write(AddressedEnvelope(remoteAddress: remote, data: bytes), promise: nil) }
                channel.flush()
            case .failure(let error):
                counters.failed(error)
                logger.info("forward \(spec): cannot relay datagrams from \(peer) to \(spec.target): \(error)")
                port.flows.openFailed(id)
            }
        }
    }

    /// Flushes `channel` once, after everything the event loop's current pass wrote to it: a batch of
    /// datagrams read from the UDP channel leaves each flow's socket in one `sendmmsg`, not one
    /// `sendmsg` each (docs/architecture.md, "UDP batching"; `DatagramWriteBatcher` does the same for
    /// one socket).
    private func flushAtEndOfPass(_ channel: Channel) {
        if unflushed.isEmpty {
            eventLoop.execute { [self] in
                let channels = unflushed.values
                unflushed.removeAll(keepingCapacity: true)
                for channel in channels { channel.flush() }
            }
        }
        unflushed[ObjectIdentifier(channel)] = channel
    }

    fileprivate func fromTarget(_ bytes: ByteBuffer, sender: SocketAddress, on socket: FlowSocket) {
        let port = socket.port
        guard let target, Self.sameHost(sender, target) else {
            port.flows.drops.count(.unsolicited)
            return
        }
        port.flows.touch(socket.id, now: now())
        counters.datagramBytesToMediator &+= UInt64(bytes.readableBytes)
        port.path.offer(portID: port.portID, peer: socket.lanPeer, bytes: bytes, drops: &port.flows.drops)
    }

    /// Whether `a` and `b` are one address and port, an IPv4 address and its mapped form alike.
    private static func sameHost(_ a: SocketAddress, _ b: SocketAddress) -> Bool {
        guard let x = a.endpoint, let y = b.endpoint, case .ip(let xa) = x.host, case .ip(let ya) = y.host else { return false }
        return x.port == y.port && xa.normalized == ya.normalized
    }

    /// Closes the flows idle for longer than the idle timeout, and their sockets.
    func sweep(now: NIODeadline) {
        guard let port = current else { return }
        for closed in port.flows.sweep(now: now) { closed.handle?.close(promise: nil) }
    }
}
