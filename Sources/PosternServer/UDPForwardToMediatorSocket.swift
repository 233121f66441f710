import Atomics
import Logging
import NIOCore
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// One socket of a `udp:ADDR:PORT=NAME/IP:PORT` forward (`UDPForwardToMediator`), on one of the
/// server's event loops: the flows of the senders whose datagrams the kernel hands to this socket.
/// The forward steers its sockets' reuseport group to the one on the loop of its mediator's session,
/// so the flows, their table, its sweep, and the session's datagram path all live on one loop, and no
/// datagram hops between threads. Every method runs on `eventLoop`.
final class UDPForwardToMediatorSocket: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// One remote peer's flow, once its mediator port is open: receives the replies.
    final class FlowPort: DatagramPathReceiver {
        let id: DatagramFlowID
        let peer: SocketAddress
        let port: UDPForwardToMediator.OpenedPort
        weak var socket: UDPForwardToMediatorSocket?
        /// Datagrams offered to the mediator port and not yet reported denied: what bounds DENIED's
        /// count, so a mediator cannot report more than this flow sent it.
        var unreported: UInt64 = 0

        init(id: DatagramFlowID, peer: SocketAddress, port: UDPForwardToMediator.OpenedPort, socket: UDPForwardToMediatorSocket) {
            self.id = id
            self.peer = peer
            self.port = port
            self.socket = socket
        }

        func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
            socket?.reply(bytes, on: self)
        }

        func datagramPathClosed(portID: UInt32) { socket?.ended(self) }

        func datagramsDenied(_ count: UInt32, portID: UInt32) { socket?.deniedByMediator(count, on: self) }

        /// Offers one datagram toward the forward's target through the flow's mediator port.
        func send(_ bytes: ByteBuffer, to target: Endpoint, drops: inout DatagramDrops) {
            if port.path.offer(portID: port.portID, peer: target, bytes: bytes, drops: &drops) { unreported &+= 1 }
        }
    }

    let spec: ForwardSpec
    let eventLoop: EventLoop
    private let counters: ForwardCounters
    private let logger: Logger
    private let now: () -> NIODeadline
    /// Opens a mediator port for a flow; nil when the mediator's session is not on this loop.
    private let openPort: UDPForwardToMediator.PortOpener
    /// Replies to the public peers, flushed once per event-loop pass (one `sendmmsg` for a batch).
    private var writer: DatagramWriteBatcher?
    private(set) var flows: DatagramFlowTable<SocketAddress, FlowPort>
    /// `flows.count`, for the admin API on the control loop.
    private let flowCount = ManagedAtomic<Int>(0)
    var openFlows: Int { flowCount.load(ordering: .relaxed) }
    private var sweeper: RepeatedTask?
    /// `rate=`: one bucket for each direction, shared by the flows of this socket (the forward's
    /// flows are all here while its mediator's session stays on this loop).
    private let rateLimit: ForwardRateLimit?
    private var stopped = false
    /// `ctl events` while someone follows it: flows opened and swept (set once, before `start`).
    var events: EventLog?

    /// Ports the mediator did not open for new senders (logged at the 1st, 10th, 100th...).
    private var openFailures = 0
    /// DENIED reports taken (logged at the 1st, 10th, 100th...).
    private var deniedReports = 0

    /// An event for `ctl events` followers only, never kept: a flow's life and its denials happen
    /// per sender, too many for the history. The detail is built only when someone follows.
    private func follow(_ kind: String, port: UInt32, _ detail: @autoclosure () -> String) {
        guard let events, events.isFollowed else { return }
        events.post(ServerEvent(mediator: spec.mediator, kind: kind, port: port, detail: detail()), keep: false)
    }

    init(
        spec: ForwardSpec, eventLoop: EventLoop, counters: ForwardCounters, limits: DatagramFlowLimits,
        now: @escaping () -> NIODeadline, logger: Logger, openPort: @escaping UDPForwardToMediator.PortOpener
    ) {
        self.spec = spec
        self.eventLoop = eventLoop
        self.counters = counters
        self.now = now
        self.logger = logger
        self.openPort = openPort
        self.flows = DatagramFlowTable(limits: limits)
        self.rateLimit = spec.options.rate.map { ForwardRateLimit(bytesPerSecond: $0, now: now) }
    }

    /// Its socket is bound: idle flows are swept from now on.
    func start() {
        eventLoop.assertInEventLoop()
        guard !stopped, sweeper == nil else { return }
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [self] _ in sweep(now: now()) }
    }

    /// Closes every flow and its mediator port (its socket is closed by the forward).
    func stop() {
        eventLoop.assertInEventLoop()
        stopped = true
        sweeper?.cancel()
        sweeper = nil
        for closed in flows.removeAll() {
            guard let flow = closed.handle else { continue }
            flow.port.path.detach(portID: flow.port.portID)
            flow.port.close()
            follow("forward-flow-closed", port: flow.port.portID, "\(spec.text): from \(flow.peer.display), idle")
        }
        countFlows()
    }

    func handlerAdded(context: ChannelHandlerContext) { writer = DatagramWriteBatcher(channel: context.channel) }
    func handlerRemoved(context: ChannelHandlerContext) { writer = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        eventLoop.assertInEventLoop()
        let envelope = unwrapInboundIn(data)
        let peer = envelope.remoteAddress
        if !spec.options.allow.isEmpty {
            guard let text = peer.ipAddress, let ip = IPAddress(text), spec.options.allows(ip) else {
                counters.deniedBySource()
                let n = counters.policyDenials
                if n.isWorthALogLine {
                    logger.info("forward \(spec): datagram from \(peer.display) dropped: not in its allow= list (\(n) so far)")
                }
                return
            }
        }
        if rateLimit != nil, !rateLimit!.toMediator.take(envelope.data.readableBytes, now: now()) {
            return droppedByRate(toward: "the mediator")
        }
        counters.datagramToMediator(envelope.data.readableBytes)
        switch flows.arrived(envelope.data, from: peer, now: now()) {
        case .send(let flow):
            flow.send(envelope.data, to: spec.target, drops: &flows.drops)
        case .open(let id):
            countFlows()
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
            logger.debug("forward \(spec): mediator '\(spec.mediator)' not connected on this loop; datagram dropped")
            counters.refused()
            flows.openFailed(id)
            countFlows()
            return
        }
        // The link answers on its loop, which is this one: `openPort` gives none from another.
        opening.hop(to: eventLoop).whenComplete { [self] result in
            switch result {
            case .success(let port):
                let flow = FlowPort(id: id, peer: peer, port: port, socket: self)
                guard let backlog = flows.opened(id, handle: flow, now: now()) else {
                    port.close()  // the flow ended while its port was being opened
                    return
                }
                port.path.attach(portID: port.portID, flow)
                counters.flowOpened()
                follow("forward-flow", port: port.portID, "\(spec.text): from \(peer.display)")
                for bytes in backlog {
                    flow.send(bytes, to: spec.target, drops: &flows.drops)
                }
            case .failure(let error):
                counters.failed(error)
                // One per new sender: a user spraying datagrams from new source ports at a mediator
                // that refuses (its port limit, a session ending) must not flood the log.
                openFailures += 1
                if openFailures.isWorthALogLine {
                    logger.info("forward \(spec): cannot open a UDP port on '\(spec.mediator)': \(error) (\(openFailures) so far)")
                }
                flows.openFailed(id)
                countFlows()
            }
        }
    }

    private func droppedByRate(toward: String) {
        counters.droppedByRate()
        let n = counters.rateLimitDrops
        if n.isWorthALogLine {
            logger.info(
                "forward \(spec): over its rate= of \(spec.options.rate ?? 0) bytes/s; dropping datagrams toward \(toward) (\(n) so far)")
        }
    }

    fileprivate func reply(_ bytes: ByteBuffer, on flow: FlowPort) {
        eventLoop.assertInEventLoop()
        flows.touch(flow.id, now: now())
        if rateLimit != nil, !rateLimit!.fromMediator.take(bytes.readableBytes, now: now()) {
            return droppedByRate(toward: "users")
        }
        counters.datagramFromMediator(bytes.readableBytes)
        writer?.write(AddressedEnvelope(remoteAddress: flow.peer, data: bytes))
    }

    /// The mediator's policy dropped `count` of the datagrams this flow sent (DENIED, §6.5): they
    /// count in the forward's DENIED as a TCP connection the mediator refuses does. Never more than
    /// the flow sent since the last report: a forged count inflates nothing.
    fileprivate func deniedByMediator(_ count: UInt32, on flow: FlowPort) {
        eventLoop.assertInEventLoop()
        let n = min(UInt64(count), flow.unreported)
        flow.unreported -= n
        guard n > 0 else { return }
        counters.deniedByMediator(n)
        deniedReports += 1
        if deniedReports.isWorthALogLine {
            logger.info(
                "forward \(spec): mediator '\(spec.mediator)' denies datagrams to \(spec.target) by its policy (\(counters.policyDenials) denied so far)"
            )
        }
        // Like a TCP forward's "connect-failed", for followers only: the mediator sends at most one
        // DENIED per port a second, so a flood makes no more events than that.
        follow(
            "forward-denied", port: flow.port.portID,
            "\(spec.text): \(n) datagrams from \(flow.peer.display) to \(spec.target) denied by the mediator's policy")
    }

    /// The flow's path is gone (its session ended): the next datagram of its peer opens a new flow.
    fileprivate func ended(_ flow: FlowPort) {
        eventLoop.assertInEventLoop()
        flows.remove(flow.id)
        countFlows()
    }

    /// Closes the flows idle for longer than the idle timeout, and their mediator ports.
    func sweep(now: NIODeadline) {
        eventLoop.assertInEventLoop()
        for closed in flows.sweep(now: now) {
            guard let flow = closed.handle else { continue }
            flow.port.path.detach(portID: flow.port.portID)
            flow.port.close()
        }
        countFlows()
    }

    private func countFlows() { flowCount.store(flows.count, ordering: .relaxed) }
}
