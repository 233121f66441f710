import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternSOCKS
import PosternTunnel
import PosternWire

/// One SOCKS5 client connection: the handshake (`SOCKSServerHandshake` decides), then its request
/// carried out by a mediator — CONNECT and BIND end in a `StreamRelay` joined to this socket, as a
/// `tcp:` forward's connections do; UDP ASSOCIATE keeps this connection as the association's
/// control connection (`SOCKSUDPAssociation`).
///
/// Reads are asked for only during the handshake, while a UDP association lives (to see its
/// control connection end) and, bounded, while a BIND waits; whatever the client sends after its
/// request goes to an `EarlyInput` behind this handler and reaches the relay in order.
final class SOCKSConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case handshake
        /// The request is with the mediator.
        case requesting
        /// BIND: the first reply went out; waiting for the peer.
        case bindWaiting
        case associated
        /// The relay has the socket; this handler is leaving.
        case relaying
        case closed
    }

    private let listener: SOCKSListener
    private var machine: SOCKSServerHandshake
    private var phase = Phase.handshake
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var early: EarlyInput?
    private var link: MediatorLink?
    /// BIND: the mediator's listening port, closed once a peer came or this connection ended.
    private var bindPortID: UInt32?
    /// BIND: bytes the client sent while waiting, kept by `early`; reads stop past `maxEarlyBytes`.
    private var earlyBytes = 0
    private static let maxEarlyBytes = 64 * 1024
    private var association: SOCKSUDPAssociation?
    private var peer = "?"

    init(listener: SOCKSListener) {
        self.listener = listener
        let users = listener.settings.users
        let mediator = listener.spec.mediator
        self.machine = SOCKSServerHandshake(method: users == nil ? .noAuthentication : .usernamePassword, mediator: mediator) {
            users?.mediator(username: $0, password: $1, listenerMediator: mediator)
        }
    }

    private var logger: Logger { listener.logger }

    /// How the log names this client: listener, address, user.
    private var who: String {
        let user = machine.username.map { " user '\($0)'" } ?? ""
        return "socks \(listener.spec.listen): client \(peer)\(user)"
    }

    // MARK: - Socket events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        peer = context.channel.remoteAddress?.display ?? "?"
        timer = context.eventLoop.scheduleTask(in: listener.settings.handshakeTimeout) { [self] in
            guard phase == .handshake else { return }
            listener.handshakeAbandoned(
                "stalled handshakes", "\(who): no complete request within \(listener.settings.handshakeTimeout.seconds) s; closing")
            close()
        }
        if context.channel.isActive { context.read() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        // Added before activation, the read of handlerAdded registered no interest (autoRead is off).
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .handshake:
            handshake(unwrapInboundIn(data), context)
        case .requesting, .bindWaiting, .relaying:
            earlyBytes += unwrapInboundIn(data).readableBytes
            context.fireChannelRead(data)  // to `early`, kept for the relay
        case .associated, .closed:
            break  // nothing is relayed on a UDP association's control connection
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch phase {
        case .handshake, .associated:
            context.read()
        case .bindWaiting where earlyBytes < Self.maxEarlyBytes:
            context.read()
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            switch phase {
            case .handshake, .associated:
                // A half-closed handshake will never finish; an association ends with its control
                // connection's input.
                return close()
            case .closed:
                return
            default:
                break  // for the relay, through `early`
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch phase {
        case .handshake, .associated, .bindWaiting, .requesting:
            logger.debug("\(who): \(error); closing")
            close()
        case .relaying, .closed:
            context.fireErrorCaught(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended()
        context.fireChannelInactive()
    }

    // MARK: - Handshake

    private func handshake(_ bytes: ByteBuffer, _ context: ChannelHandlerContext) {
        let step = machine.received(bytes)
        if let reply = step.reply { context.writeAndFlush(wrapOutboundOut(reply), promise: nil) }
        switch step.next {
        case .readMore:
            break
        case .close(let reason):
            if machine.refusedCredentials {
                // Each refused password is worth its line: it is how a guesser shows in the log.
                logger.notice("\(who): \(reason); closing")
            } else {
                listener.handshakeAbandoned("malformed handshakes", "\(who): \(reason); closing")
            }
            closeAfterWrites()
        case .request(let request):
            leaveHandshake()
            phase = .requesting
            carryOut(request, context)
        }
    }

    private func leaveHandshake() {
        timer?.cancel()
        timer = nil
        if phase == .handshake { listener.handshakeEnded() }
    }

    private func carryOut(_ request: SOCKSRequest, _ context: ChannelHandlerContext) {
        guard let link = listener.registry.localLink(machine.mediator) else {
            logger.info("\(who): \(request.command) \(request.destination): mediator '\(machine.mediator)' is not connected")
            return answerAndClose(.networkUnreachable)
        }
        self.link = link
        switch request.command {
        case .connect, .bind:
            let early = EarlyInput()
            self.early = early
            do {
                try context.pipeline.syncOperations.addHandler(early, position: .after(self))
            } catch {
                return close()
            }
            let leftover = machine.leftover
            if leftover.readableBytes > 0 {
                earlyBytes += leftover.readableBytes
                context.fireChannelRead(wrapInboundOut(leftover))
            }
            request.command == .connect ? connect(request.destination, link) : bind(request.destination, link)
        case .udpAssociate:
            associate(request.destination, link, context)
        }
    }

    // MARK: - CONNECT

    private func connect(_ destination: Endpoint, _ link: MediatorLink) {
        link.connect(portID: 0, to: destination, owner: "socks \(peer)").whenComplete { [self] result in
            switch result {
            case .success(let done):
                // The client gave up meanwhile: the new port is reset.
                guard phase == .requesting, let context, let early else { return Self.reset(done.portID, link) }
                logger.debug("\(who): CONNECT \(destination) through '\(link.name)' (port \(done.portID))")
                context.writeAndFlush(wrapOutboundOut(SOCKSServerHandshake.reply(.succeeded, bound: done.local)), promise: nil)
                phase = .relaying
                link.relay(context.channel, connected: done, early: early)
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            case .failure(let error):
                failed("CONNECT \(destination)", error, link)
            }
        }
    }

    // MARK: - BIND

    private func bind(_ expected: Endpoint, _ link: MediatorLink) {
        let address = SOCKSBindAddress.choose(for: expected, in: link.environment)
        link.open(.tcp, address: address, port: 0, exact: false, owner: "socks BIND for \(peer)")
            .flatMap { [self] opened in
                bindPortID = opened.portID
                return link.listen(portID: opened.portID, backlog: 1) { [weak self] accepted in
                    guard let self else { return Self.reset(accepted.portID, link) }
                    self.accepted(accepted, expected: expected, link)
                }
                .flatMapErrorThrowing { [self] error in
                    // A refused LISTEN may leave the opened port behind on the mediator.
                    closeBindPort(link)
                    throw error
                }
            }
            .whenComplete { [self] result in
                switch result {
                case .success(let done):
                    guard phase == .requesting, let context else { return closeBindPort(link) }
                    logger.info("\(who): BIND for \(expected): mediator '\(link.name)' listens on \(done.local)")
                    context.writeAndFlush(wrapOutboundOut(SOCKSServerHandshake.reply(.succeeded, bound: done.local)), promise: nil)
                    phase = .bindWaiting
                    timer = context.eventLoop.scheduleTask(in: listener.settings.bindTimeout) { [self] in
                        guard phase == .bindWaiting else { return }
                        logger.info("\(who): BIND: nobody connected within \(listener.settings.bindTimeout.seconds) s")
                        closeBindPort(link)
                        answerAndClose(.ttlExpired)
                    }
                    context.read()
                case .failure(let error):
                    failed("BIND for \(expected)", error, link)
                }
            }
    }

    /// The mediator accepted a connection on the BIND port. Only the peer the request named (when it
    /// named an address) may be the one: anyone else on the LAN is reset, and the wait goes on.
    private func accepted(_ a: Frame.Accepted, expected: Endpoint, _ link: MediatorLink) {
        guard phase == .bindWaiting, let context, let early else { return Self.reset(a.portID, link) }
        if case .ip(let want) = expected.host, !want.isUnspecified, a.peer.host != .ip(want.normalized), a.peer.host != .ip(want) {
            logger.warning("\(who): BIND: connection from \(a.peer) refused, the request named \(want.bracketed)")
            return Self.reset(a.portID, link)
        }
        let relay = link.makeRelay(portID: a.portID)
        timer?.cancel()
        closeBindPort(link)
        logger.info("\(who): BIND: \(a.peer) connected (port \(a.portID))")
        context.writeAndFlush(wrapOutboundOut(SOCKSServerHandshake.reply(.succeeded, bound: a.peer)), promise: nil)
        phase = .relaying
        link.join(context.channel, relay, early: early)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func closeBindPort(_ link: MediatorLink) {
        guard let id = bindPortID else { return }
        bindPortID = nil
        if link.isOpen { _ = link.close(portID: id) }
    }

    // MARK: - UDP ASSOCIATE

    private func associate(_ declared: Endpoint, _ link: MediatorLink, _ context: ChannelHandlerContext) {
        guard let local = context.channel.localAddress, let remote = context.channel.remoteAddress,
            let localIP = local.ipAddress.flatMap(IPAddress.init), let clientIP = remote.ipAddress.flatMap(IPAddress.init)
        else { return answerAndClose(.generalFailure) }
        // On a dual-stack [::] listener an IPv4 client arrives as ::ffff:a.b.c.d: its relay address
        // must be the IPv4 one, which is what it can send to.
        let association = SOCKSUDPAssociation(
            link: link, clientIP: clientIP, declared: declared, label: who, logger: logger,
            ended: { [weak self] in self?.close() })
        self.association = association
        association.start(bindingTo: localIP.normalized.description, on: context.eventLoop).whenComplete { [self] result in
            switch result {
            case .success(let bound):
                guard phase == .requesting, let context = self.context else { return association.close() }
                logger.info("\(who): UDP ASSOCIATE through '\(link.name)': relay on \(bound)")
                context.writeAndFlush(wrapOutboundOut(SOCKSServerHandshake.reply(.succeeded, bound: bound)), promise: nil)
                phase = .associated
                context.read()
            case .failure(let error):
                association.close()
                self.association = nil
                failed("UDP ASSOCIATE", error, link)
            }
        }
    }

    // MARK: - Endings

    /// A request the mediator (or the session) refused: the reply code that says why, and the log.
    private func failed(_ what: String, _ error: Error, _ link: MediatorLink) {
        let code: SOCKSReply
        if let op = error as? OperationError {
            code = SOCKSReply(failure: op.code, errno: op.errno)
        } else if let io = error as? IOError {
            code = SOCKSReply(failure: ErrorCode(errno: io.errnoCode), errno: io.errnoCode)
        } else {
            code = .generalFailure
        }
        let line = "\(who): \(what) through '\(link.name)' refused (reply \(code.rawValue), \(code)): \(error)"
        if code == .notAllowed { logger.warning("\(line)") } else { logger.info("\(line)") }
        listener.registry.events.post(
            ServerEvent(mediator: link.name, kind: code == .notAllowed ? "socks-denied" : "socks-failed", detail: line))
        answerAndClose(code)
    }

    private func answerAndClose(_ code: SOCKSReply) {
        guard phase != .closed, let context else { return }
        context.writeAndFlush(wrapOutboundOut(SOCKSServerHandshake.reply(code)), promise: nil)
        closeAfterWrites()
    }

    private func closeAfterWrites() {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
        ended()
    }

    private func close() {
        context?.close(promise: nil)
        ended()
    }

    /// Releases what this connection holds, once: its handshake slot, its timer, a BIND's listening
    /// port, a UDP association.
    private func ended() {
        if phase == .handshake { leaveHandshake() }
        guard phase != .relaying, phase != .closed else { return }
        phase = .closed
        timer?.cancel()
        timer = nil
        if let link { closeBindPort(link) }
        association?.close()
        association = nil
    }

    private static func reset(_ id: UInt32, _ link: MediatorLink) {
        guard link.isOpen else { return }
        link.session.send(.reset(.init(portID: id, code: .connectionReset)))
        link.forget(portID: id)
    }
}
