import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternTunnel
import PosternWire

/// `tcp:ADDR:PORT=NAME/HOST:PORT`: the server listens; each connection makes the mediator connect
/// to the target (OPEN+CONNECT in one CONNECT with port 0) and is relayed through the tunnel.
final class TCPForwardToMediator {
    let spec: ForwardSpec
    private let registry: MediatorRegistry
    private var logger: Logger
    private var channel: Channel?

    init(spec: ForwardSpec, registry: MediatorRegistry, logger: Logger) {
        self.spec = spec
        self.registry = registry
        self.logger = logger
    }

    func start(on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.recvAllocator, value: RelayBuffers.allocator)
            .childChannelInitializer { [self] child in
                accepted(child)
                return child.eventLoop.makeSucceededVoidFuture()
            }
            .bind(to: try! ForwardSocket.address(spec.listen))
            .map { [self] channel in
                self.channel = channel
                logger.info("forward \(spec): listening on \(spec.listen)")
            }
    }

    func stop() { channel?.close(promise: nil) }

    private func accepted(_ child: Channel) {
        guard let link = registry.link(spec.mediator) else {
            logger.warning("forward \(spec): mediator '\(spec.mediator)' is not connected; resetting the connection")
            StreamRelay.abortiveClose(child)
            return
        }
        let peer = child.remoteAddress?.display ?? "?"
        link.connect(portID: 0, to: spec.target, owner: "forward \(spec)").whenComplete { [self] result in
            switch result {
            case .success(let done):
                guard child.isActive, link.isOpen else {
                    link.session.send(.reset(.init(portID: done.portID, code: .connectionReset)))
                    link.forget(portID: done.portID)
                    return
                }
                let relay = StreamRelay(portID: done.portID, session: link.session)
                relay.onClose = { [weak link] r, _ in link?.forget(portID: r.portID) }
                link.session.register(relay)
                child.pipeline.addHandler(relay).whenFailure { _ in child.close(promise: nil) }
            case .failure(let error):
                // The user sees an RST: the closest a forward can come to "connection refused".
                logger.info("forward \(spec): connection from \(peer) not relayed: \(error)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "connect-failed", detail: "\(spec.target): \(error)"))
                StreamRelay.abortiveClose(child)
            }
        }
    }
}

enum ForwardSocket {
    static func address(_ e: Endpoint) throws -> SocketAddress {
        guard case .ip(let ip) = e.host else { throw OperationError(code: .invalidState, message: "listen address must be an IP address") }
        return try SocketAddress(ipAddress: ip.description, port: Int(e.port))
    }
}
