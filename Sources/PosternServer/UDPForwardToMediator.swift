import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternTunnel
import PosternWire

/// `udp:ADDR:PORT=NAME/IP:PORT`: the server listens for datagrams; each remote peer gets its own UDP
/// port on the mediator (so replies find their way back), closed after a quiet spell.
final class UDPForwardToMediator: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// One remote peer's flow: the mediator port that carries it.
    final class Flow: TunnelPort {
        var portID: UInt32 = 0
        let peer: SocketAddress
        let link: MediatorLink
        weak var forward: UDPForwardToMediator?
        var waiting: [ByteBuffer] = []
        var lastActive = NIODeadline.now()
        var isOpen = false

        init(peer: SocketAddress, link: MediatorLink, forward: UDPForwardToMediator) {
            self.peer = peer
            self.link = link
            self.forward = forward
        }

        func tunnelReceived(_ frame: Frame) {
            guard case .datagram(let d) = frame else { return }
            lastActive = .now()
            forward?.reply(d.bytes, to: peer)
        }

        func tunnelBecameWritable() {}
        func tunnelClosed() { forward?.flows[peer] = nil }
    }

    let spec: ForwardSpec
    private let registry: MediatorRegistry
    private var logger: Logger
    private let idleTimeout: TimeAmount
    private var channel: Channel?
    private var context: ChannelHandlerContext?
    fileprivate var flows: [SocketAddress: Flow] = [:]
    private var sweeper: RepeatedTask?
    private let targetAddress: IPAddress

    init(spec: ForwardSpec, registry: MediatorRegistry, idleTimeout: TimeAmount, logger: Logger) throws {
        guard case .ip(let ip) = spec.target.host else {
            throw ForwardSpec.ParseError(spec: spec.text, reason: "a udp target must be an IP address")
        }
        self.spec = spec
        self.registry = registry
        self.idleTimeout = idleTimeout
        self.logger = logger
        self.targetAddress = ip
    }

    func start(on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        DatagramBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramAllocator)
            .channelInitializer { [self] in $0.pipeline.addHandler(self) }
            .bind(to: try! ForwardSocket.address(spec.listen))
            .map { [self] channel in
                self.channel = channel
                logger.info("forward \(spec): listening on \(spec.listen)")
                sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [self] _ in sweep() }
            }
    }

    func stop() {
        sweeper?.cancel()
        channel?.close(promise: nil)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let peer = envelope.remoteAddress
        if let flow = flows[peer], flow.link.isOpen {
            flow.lastActive = .now()
            if flow.isOpen {
                send(envelope.data, on: flow)
            } else if flow.waiting.count < 64 {
                flow.waiting.append(envelope.data)
            }
            return
        }
        guard let link = registry.link(spec.mediator) else {
            logger.debug("forward \(spec): mediator '\(spec.mediator)' not connected; datagram dropped")
            return
        }
        let flow = Flow(peer: peer, link: link, forward: self)
        flow.waiting.append(envelope.data)
        flows[peer] = flow
        let any: IPAddress = targetAddress.isIPv6 ? .anyV6 : .anyV4
        link.open(.udp, address: any, port: 0, exact: false, owner: "forward \(spec) for \(peer)").whenComplete { [self] result in
            switch result {
            case .success(let done):
                guard flows[peer] === flow else {
                    _ = link.close(portID: done.portID)
                    return
                }
                flow.portID = done.portID
                flow.isOpen = true
                link.session.register(flow)
                for d in flow.waiting { send(d, on: flow) }
                flow.waiting = []
            case .failure(let error):
                logger.info("forward \(spec): cannot open a UDP port on '\(spec.mediator)': \(error)")
                flows[peer] = nil
            }
        }
    }

    private func send(_ bytes: ByteBuffer, on flow: Flow) {
        guard flow.link.session.isWritable else { return }  // datagrams are dropped, not queued
        flow.link.session.send(.datagram(.init(portID: flow.portID, peer: spec.target, bytes: bytes)))
    }

    fileprivate func reply(_ bytes: ByteBuffer, to peer: SocketAddress) {
        context?.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: peer, data: bytes)), promise: nil)
    }

    private func sweep() {
        let now = NIODeadline.now()
        for (peer, flow) in flows where now - flow.lastActive > idleTimeout || !flow.link.isOpen {
            flows[peer] = nil
            if flow.isOpen && flow.link.isOpen { _ = flow.link.close(portID: flow.portID) }
        }
    }
}
