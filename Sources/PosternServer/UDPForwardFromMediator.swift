import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternTunnel
import PosternWire

/// `udp:NAME/ADDR:PORT=HOST:PORT`: the mediator opens a UDP port on its LAN; each LAN peer's datagrams
/// reach the target from a server socket of their own, and the target's replies go back to that peer.
/// (With UDP channels these datagrams will travel a UDP channel via REDIRECT; today they ride the TCP
/// channel as DATAGRAM frames.)
final class UDPForwardFromMediator {
    /// The mediator's port, seen from the server.
    final class MediatorPort: TunnelPort {
        let portID: UInt32
        let link: MediatorLink
        weak var forward: UDPForwardFromMediator?
        var flows: [Endpoint: Flow] = [:]

        init(portID: UInt32, link: MediatorLink, forward: UDPForwardFromMediator) {
            self.portID = portID
            self.link = link
            self.forward = forward
        }

        func tunnelReceived(_ frame: Frame) {
            guard case .datagram(let d) = frame else { return }
            forward?.fromLAN(d.bytes, peer: d.peer, on: self)
        }

        func tunnelBecameWritable() {}

        func tunnelClosed() {
            for f in flows.values { f.channel?.close(promise: nil) }
            flows.removeAll()
        }
    }

    /// One LAN peer: a server-side socket talking to the target.
    final class Flow: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let lanPeer: Endpoint
        unowned let port: MediatorPort
        var channel: Channel?
        var waiting: [ByteBuffer] = []
        var lastActive = NIODeadline.now()

        init(lanPeer: Endpoint, port: MediatorPort) {
            self.lanPeer = lanPeer
            self.port = port
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            lastActive = .now()
            guard port.link.session.isWritable else { return }
            port.link.session.send(.datagram(.init(portID: port.portID, peer: lanPeer, bytes: envelope.data)))
        }
    }

    let spec: ForwardSpec
    private let registry: MediatorRegistry
    private var logger: Logger
    private let eventLoop: EventLoop
    private let idleTimeout: TimeAmount
    private var current: MediatorPort?
    private var sweeper: RepeatedTask?
    private var target: SocketAddress?

    init(spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, idleTimeout: TimeAmount, logger: Logger) {
        self.spec = spec
        self.registry = registry
        self.eventLoop = eventLoop
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    func start() {
        registry.whenAttached { [self] link in
            guard link.name == spec.mediator else { return }
            attach(link)
        }
        if let link = registry.link(spec.mediator) { attach(link) }
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [self] _ in sweep() }
    }

    private func attach(_ link: MediatorLink) {
        guard case .ip(let address) = spec.listen.host else { return }
        link.open(.udp, address: address, port: spec.listen.port, exact: true, owner: "forward \(spec)").whenComplete { [self] result in
            switch result {
            case .success(let done):
                let port = MediatorPort(portID: done.portID, link: link, forward: self)
                current = port
                link.session.register(port)
                logger.info("forward \(spec): mediator '\(spec.mediator)' receives datagrams on \(done.local)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "listening", port: done.portID, detail: "forward \(spec)"))
            case .failure(let error):
                logger.error("forward \(spec): mediator '\(spec.mediator)' cannot open \(spec.listen): \(error)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-failed", detail: "\(spec): \(error)"))
            }
        }
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
        if let flow = port.flows[peer] {
            flow.lastActive = .now()
            if let channel = flow.channel, let target {
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: bytes), promise: nil)
            } else if flow.waiting.count < 64 {
                flow.waiting.append(bytes)
            }
            return
        }
        let flow = Flow(lanPeer: peer, port: port)
        flow.waiting.append(bytes)
        port.flows[peer] = flow
        resolveTarget().flatMap { [self] target -> EventLoopFuture<(Channel, SocketAddress)> in
            let any = target.protocol == .inet6 ? "::" : "0.0.0.0"
            return DatagramBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramAllocator)
                .channelInitializer { $0.pipeline.addHandler(flow) }
                .bind(host: any, port: 0)
                .map { ($0, target) }
        }.whenComplete { [self] result in
            switch result {
            case .success(let (channel, target)):
                guard port.flows[peer] === flow else {
                    channel.close(promise: nil)
                    return
                }
                flow.channel = channel
                for b in flow.waiting { channel.write(AddressedEnvelope(remoteAddress: target, data: b), promise: nil) }
                channel.flush()
                flow.waiting = []
            case .failure(let error):
                logger.info("forward \(spec): cannot relay datagrams from \(peer) to \(spec.target): \(error)")
                port.flows[peer] = nil
            }
        }
    }

    private func sweep() {
        guard let port = current else { return }
        let now = NIODeadline.now()
        for (peer, flow) in port.flows where now - flow.lastActive > idleTimeout {
            flow.channel?.close(promise: nil)
            port.flows[peer] = nil
        }
    }
}
