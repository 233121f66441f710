import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternTunnel
import PosternWire

/// `tcp:ADDR:PORT=NAME/HOST:PORT`: the server listens; each connection makes the mediator connect
/// to the target (OPEN+CONNECT in one CONNECT with port 0) and is relayed through the tunnel.
final class TCPForwardToMediator: Forward {
    let spec: ForwardSpec
    private let registry: MediatorRegistry
    private var logger: Logger
    private let eventLoop: EventLoop
    private var channel: Channel?

    init(spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, logger: Logger) {
        self.spec = spec
        self.registry = registry
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Each connection picks the mediator's current session when it arrives: nothing to attach.
    func start() -> EventLoopFuture<Void> {
        ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .relayedStreamChildOptions()
            .childChannelInitializer { [self] child in
                // In place from the start: NIO drains a socket to its end by itself when the peer's
                // FIN arrives, read() or not, so without a handler here a request sent with its FIN
                // before the mediator has connected would fall off the pipeline.
                let early = EarlyInput()
                return child.pipeline.addHandler(early).map { [self] in accepted(child, early) }
            }
            .bind(to: SocketAddress(spec.listenAddress))
            .map { [self] channel in
                self.channel = channel
                logger.info("forward \(spec): listening on \(spec.listen)")
            }
    }

    func stop() { channel?.close(promise: nil) }

    private func accepted(_ child: Channel, _ early: EarlyInput) {
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
                child.pipeline.addHandler(relay).whenComplete { result in
                    switch result {
                    case .success: early.handOver()
                    case .failure: child.close(promise: nil)
                    }
                }
            case .failure(let error):
                // The user sees an RST: the closest a forward can come to "connection refused".
                logger.info("forward \(spec): connection from \(peer) not relayed: \(error)")
                registry.events.post(ServerEvent(mediator: spec.mediator, kind: "connect-failed", detail: "\(spec.target): \(error)"))
                StreamRelay.abortiveClose(child)
            }
        }
    }
}

/// Keeps what a forwarded connection delivers before its relay exists (bytes, then end of input) and
/// hands it over, in order, once the relay sits behind it; then steps out of the pipeline. What it
/// keeps is bounded by the socket's receive buffer: nobody asks for reads before the relay.
final class EarlyInput: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var bytes: ByteBuffer?
    private var inputClosed = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        if bytes == nil { bytes = b } else { bytes!.writeBuffer(&b) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            inputClosed = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The relay was added after this handler: give it what came so far and leave.
    func handOver() {
        guard let context else { return }
        if let b = bytes {
            bytes = nil
            context.fireChannelRead(wrapInboundOut(b))
            context.fireChannelReadComplete()
        }
        if inputClosed {
            inputClosed = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
