import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// `udp:ADDR:PORT=NAME/IP:PORT`: the server listens for datagrams; each remote peer gets its own UDP
/// port on the mediator (so replies find their way back), closed after a quiet spell. The flows are
/// a `DatagramFlowTable`, at most `limits.maxFlows` of them (`--udp-max-flows`): a sender spraying
/// from thousands of source ports cannot take every port of the mediator's `--max-ports` from the
/// other forwards. The datagrams travel the mediator session's `DatagramPath`.
final class UDPForwardToMediator: ChannelInboundHandler, Forward {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// A mediator port opened for one flow, and how to close it.
    struct OpenedPort {
        var portID: UInt32
        var path: DatagramPath
        var close: () -> Void
    }

    /// Opens a UDP port on the mediator for a flow (the argument names its owner); nil when the
    /// mediator is not connected.
    typealias PortOpener = (_ owner: String) -> EventLoopFuture<OpenedPort>?

    /// One remote peer's flow, once its mediator port is open: receives the replies.
    final class FlowPort: DatagramPathReceiver {
        let id: DatagramFlowID
        let peer: SocketAddress
        let port: OpenedPort
        weak var forward: UDPForwardToMediator?

        init(id: DatagramFlowID, peer: SocketAddress, port: OpenedPort, forward: UDPForwardToMediator) {
            self.id = id
            self.peer = peer
            self.port = port
            self.forward = forward
        }

        func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
            forward?.reply(bytes, on: self)
        }

        func datagramPathClosed(portID: UInt32) { forward?.ended(self) }
    }

    let spec: ForwardSpec
    let counters = ForwardCounters()
    private let eventLoop: EventLoop
    private var logger: Logger
    private let now: () -> NIODeadline
    private var openPort: PortOpener = { _ in nil }
    private var channel: Channel?
    /// Replies to the public peers, flushed once per event-loop pass (one `sendmmsg` for a batch).
    private var writer: DatagramWriteBatcher?
    private(set) var flows: DatagramFlowTable<SocketAddress, FlowPort>
    private var sweeper: RepeatedTask?
    /// `rate=`: one bucket for each direction, shared by every flow.
    private let rateLimit: ForwardRateLimit?

    /// `openPort` nil: ports are opened on the mediator's current session in `registry`.
    init(
        spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, limits: DatagramFlowLimits,
        now: @escaping () -> NIODeadline, logger: Logger, openPort: PortOpener? = nil
    ) throws {
        guard case .ip(let target) = spec.target.host else {
            throw ForwardSpec.ParseError(spec: spec.text, reason: "a udp target must be an IP address")
        }
        self.spec = spec
        self.eventLoop = eventLoop
        self.now = now
        self.logger = logger
        self.flows = DatagramFlowTable(limits: limits)
        self.rateLimit = spec.options.rate.map { ForwardRateLimit(bytesPerSecond: $0, now: now) }
        self.openPort = openPort ?? Self.opener(spec: spec, target: target, registry: registry)
        counters.openFlows = { [weak self] in self?.flows.count ?? 0 }
    }

    /// Each flow opens an ephemeral UDP port of the target's family on the mediator.
    private static func opener(spec: ForwardSpec, target: IPAddress, registry: MediatorRegistry) -> PortOpener {
        { owner in
            registry.localLink(spec.mediator)?.openUDPPort(v6: target.isIPv6, owner: owner)
        }
    }

    /// `--pcap`: the forward's datagrams are recorded here too.
    var recorder: PcapRecorder?

    /// `ctl capture`: a tap of its own on the forward's socket, from now until `stopCapture`.
    func startCapture(_ recorder: PcapRecorder) {
        guard let channel else { return }
        channel.pipeline.removeHandler(name: Self.captureTap).whenComplete { _ in
            channel.pipeline.addHandler(PcapDatagramTap(recorder: recorder), name: Self.captureTap, position: .first).whenFailure { _ in }
        }
    }

    func stopCapture() {
        channel?.pipeline.removeHandler(name: Self.captureTap).whenFailure { _ in }
    }

    private static let captureTap = "ctl-capture"

    func start() -> EventLoopFuture<Void> {
        DatagramBootstrap(group: eventLoop)
            .batchedDatagramOptions()
            .channelInitializer { [self] channel in
                DatagramChecksumFilter.attach(to: channel).flatMapThrowing { [self] in
                    // --pcap: the tap sits before the forward, so it sees what the socket sees.
                    if let recorder { try channel.pipeline.syncOperations.addHandler(PcapDatagramTap(recorder: recorder)) }
                    try channel.pipeline.syncOperations.addHandler(self)
                }
            }
            .bind(to: SocketAddress(spec.listenAddress))
            .map { [self] channel in
                self.channel = channel
                counters.listening = true
                logger.info("forward \(spec): listening on \(spec.listen)")
                sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [self] _ in sweep(now: now()) }
            }
    }

    func stop() {
        counters.listening = false
        sweeper?.cancel()
        for closed in flows.removeAll() {
            guard let flow = closed.handle else { continue }
            flow.port.path.detach(portID: flow.port.portID)
            flow.port.close()
        }
        channel?.close(promise: nil)
    }

    func handlerAdded(context: ChannelHandlerContext) { writer = DatagramWriteBatcher(channel: context.channel) }
    func handlerRemoved(context: ChannelHandlerContext) { writer = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let peer = envelope.remoteAddress
        if !spec.options.allow.isEmpty {
            guard let text = peer.ipAddress, let ip = IPAddress(text), spec.options.allows(ip) else {
                counters.deniedBySource()
                let n = counters.policyDenials
                if Int(clamping: n).isWorthALogLine {
                    logger.info("forward \(spec): datagram from \(peer.display) dropped: not in its allow= list (\(n) so far)")
                }
                return
            }
        }
        if rateLimit != nil, !rateLimit!.toMediator.take(envelope.data.readableBytes, now: now()) {
            return droppedByRate(toward: "the mediator")
        }
        counters.datagramBytesToMediator &+= UInt64(envelope.data.readableBytes)
        switch flows.arrived(envelope.data, from: peer, now: now()) {
        case .send(let flow):
            flow.port.path.offer(portID: flow.port.portID, peer: spec.target, bytes: envelope.data, drops: &flows.drops)
        case .open(let id):
            open(id, for: peer)
        case .overFlowLimit(let log):
            if log {
                logger.warning(
                    "forward \(spec): holds its limit of \(flows.limits.maxFlows) UDP flows (--udp-max-flows); datagrams from new senders such as \(peer.display) are dropped (\(flows.drops[.flowLimit]) so far)"
                )
            }
        case .queued, .dropped:
            break
        }
    }

    private func open(_ id: DatagramFlowID, for peer: SocketAddress) {
        guard let opening = openPort("forward \(spec) for \(peer)") else {
            logger.debug("forward \(spec): mediator '\(spec.mediator)' not connected; datagram dropped")
            counters.refused()
            flows.openFailed(id)
            return
        }
        opening.whenComplete { [self] result in
            switch result {
            case .success(let port):
                let flow = FlowPort(id: id, peer: peer, port: port, forward: self)
                guard let backlog = flows.opened(id, handle: flow, now: now()) else {
                    port.close()  // the flow ended while its port was being opened
                    return
                }
                port.path.attach(portID: port.portID, flow)
                counters.flowOpened()
                for bytes in backlog {
                    port.path.offer(portID: port.portID, peer: spec.target, bytes: bytes, drops: &flows.drops)
                }
            case .failure(let error):
                counters.failed(error)
                logger.info("forward \(spec): cannot open a UDP port on '\(spec.mediator)': \(error)")
                flows.openFailed(id)
            }
        }
    }

    private func droppedByRate(toward: String) {
        counters.droppedByRate()
        let n = counters.rateLimitDrops
        if Int(clamping: n).isWorthALogLine {
            logger.info(
                "forward \(spec): over its rate= of \(spec.options.rate ?? 0) bytes/s; dropping datagrams toward \(toward) (\(n) so far)")
        }
    }

    fileprivate func reply(_ bytes: ByteBuffer, on flow: FlowPort) {
        flows.touch(flow.id, now: now())
        if rateLimit != nil, !rateLimit!.fromMediator.take(bytes.readableBytes, now: now()) {
            return droppedByRate(toward: "users")
        }
        counters.datagramBytesFromMediator &+= UInt64(bytes.readableBytes)
        writer?.write(AddressedEnvelope(remoteAddress: flow.peer, data: bytes))
    }

    /// The flow's path is gone (its session ended): the next datagram of its peer opens a new flow.
    fileprivate func ended(_ flow: FlowPort) {
        flows.remove(flow.id)
    }

    /// Closes the flows idle for longer than the idle timeout, and their mediator ports.
    func sweep(now: NIODeadline) {
        for closed in flows.sweep(now: now) {
            guard let flow = closed.handle else { continue }
            flow.port.path.detach(portID: flow.port.portID)
            flow.port.close()
        }
    }
}
