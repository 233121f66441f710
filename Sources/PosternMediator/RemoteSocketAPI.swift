import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternTunnel
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// Executes the server's requests on this host's real sockets (docs/protocol.md §5): the remote
/// socket API of DESIGN.md. One instance per session; its ports die with the session.
final class RemoteSocketAPI: TunnelSessionDelegate {
    enum Port {
        case reserved(ReservedSocket)
        case stream(StreamRelay, Channel)
        case connecting
        case listener(Channel, Endpoint)
        case datagram(DatagramPort, Channel)
    }

    private let configuration: MediatorConfiguration
    private let eventLoop: EventLoop
    private var logger: Logger
    private var ports: [UInt32: Port] = [:]
    private var nextPortID: UInt32 = 1
    private var pendingConnects = 0
    /// OPEN, REDIRECT, CONNECT and LISTEN requests of the current session (CLOSE only frees).
    private var requestRate: TokenBucket?
    private var rateLimited: UInt64 = 0
    var onEstablished: ((TunnelSession, EstablishedSession) -> Void)?
    var onClosed: ((SessionEnd) -> Void)?

    init(configuration: MediatorConfiguration, eventLoop: EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
    }

    // MARK: - TunnelSessionDelegate

    func sessionEstablished(_ session: TunnelSession, _ info: EstablishedSession) {
        let rate = Double(configuration.maxRequestRate)
        requestRate = TokenBucket(rate: rate, burst: rate, now: .now())
        rateLimited = 0
        onEstablished?(session, info)
    }

    func session(_ session: TunnelSession, received frame: Frame) {
        if let requestID = Self.limitedRequestID(frame), requestRate?.take(now: .now()) == false {
            rateLimited += 1
            if rateLimited == 1 || rateLimited % 1000 == 0 {
                logger.warning("request rate over \(configuration.maxRequestRate)/s: \(rateLimited) requests refused this session")
            }
            return fail(
                session, requestID, .limitExceeded, EAGAIN,
                "more than \(configuration.maxRequestRate) requests a second (the mediator's --max-request-rate)")
        }
        switch frame {
        case .open(let o): open(o, session)
        case .redirect(let r):
            guard configuration.policy.redirectEnabled else {
                logger.warning("redirect of \(r.address):\(r.port) denied by policy (--allow-redirect is off)")
                return fail(session, r.requestID, .deniedByPolicy, EACCES, "this mediator does not allow redirect (--allow-redirect)")
            }
            fail(
                session, r.requestID, .notSupported, 0,
                "redirect needs a UDP channel, which this protocol version reserves but this mediator does not run yet")
        case .connect(let c): connect(c, session)
        case .listen(let l): listen(l, session)
        case .close(let c): close(c, session)
        default:
            session.goAway(.protocolError, "the server sent \(frame.name), which only a mediator sends")
        }
    }

    func sessionClosed(_ session: TunnelSession, _ end: SessionEnd) {
        for (_, port) in ports {
            switch port {
            case .reserved(let r): r.close()
            case .listener(let c, _): c.close(promise: nil)
            case .datagram(_, let c): c.close(promise: nil)
            case .stream, .connecting: break  // relays were told by the session
            }
        }
        ports.removeAll()
        onClosed?(end)
    }

    // MARK: - Operations

    private func allocatePortID() -> UInt32 {
        // Never reused within a session: a late frame can never reach the wrong port.
        defer { nextPortID &+= 1 }
        return nextPortID
    }

    /// The request id of a request that takes resources, nil for everything else.
    static func limitedRequestID(_ frame: Frame) -> UInt32? {
        switch frame {
        case .open(let o): return o.requestID
        case .redirect(let r): return r.requestID
        case .connect(let c): return c.requestID
        case .listen(let l): return l.requestID
        default: return nil
        }
    }

    private func fail(_ session: TunnelSession, _ requestID: UInt32, _ code: ErrorCode, _ errno: Int32, _ message: String) {
        session.send(.failed(.init(requestID: requestID, code: code, errno: errno, message: message)))
    }

    private func fail(_ session: TunnelSession, _ requestID: UInt32, _ error: Error, _ what: String) {
        let (code, errno, text) = Self.describe(error)
        logger.info("\(what) failed: \(text)")
        fail(session, requestID, code, errno, text)
    }

    static func describe(_ error: Error) -> (ErrorCode, Int32, String) {
        if let io = error as? IOError {
            return (ErrorCode(errno: io.errnoCode), io.errnoCode, String(cString: strerror(io.errnoCode)))
        }
        if let c = error as? ChannelError, case .connectTimeout = c {
            return (.timedOut, ETIMEDOUT, "connect timed out")
        }
        if let n = error as? NIOConnectionError, let first = n.connectionErrors.first {
            return describe(first.error)
        }
        if let r = error as? SocketAddressError {
            return (.resolveFailed, 0, "\(r)")
        }
        return (.internalError, 0, "\(error)")
    }

    /// Every number a peer can make us hold is bounded (DESIGN.md, "Security stance").
    private func overPortLimit(_ session: TunnelSession, _ requestID: UInt32) -> Bool {
        guard ports.count >= configuration.maxPorts else { return false }
        logger.warning("refusing a request: this session already holds \(ports.count) ports (limit \(configuration.maxPorts))")
        fail(session, requestID, .limitExceeded, 0, "the mediator holds its limit of \(configuration.maxPorts) ports")
        return true
    }

    private func open(_ o: Frame.Open, _ session: TunnelSession) {
        if overPortLimit(session, o.requestID) { return }
        switch o.transport {
        case .tcp:
            do {
                let reserved = try ReservedSocket.bind(address: o.address, port: o.port, exact: o.exact)
                let id = allocatePortID()
                ports[id] = .reserved(reserved)
                logger.debug("opened tcp port \(id) at \(reserved.local)")
                session.send(.done(.init(requestID: o.requestID, portID: id, local: reserved.local)))
            } catch {
                fail(session, o.requestID, error, "open tcp \(o.address.bracketed):\(o.port)")
            }
        case .udp:
            openDatagram(o, session, port: o.port)
        }
    }

    private func openDatagram(_ o: Frame.Open, _ session: TunnelSession, port: UInt16) {
        let id = allocatePortID()
        let relay = DatagramPort(
            portID: id, path: TunnelDatagramPath(session: session), policy: configuration.policy, local: Endpoint(o.address, port),
            logger: session.logger)
        DatagramBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 0)
            .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramAllocator)
            .channelInitializer { $0.pipeline.addHandler(relay) }
            .bind(host: o.address.description, port: Int(port))
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard session.isOpen else {
                        channel.close(promise: nil)
                        return
                    }
                    relay.local = channel.localAddress?.endpoint ?? relay.local
                    ports[id] = .datagram(relay, channel)
                    relay.path.attach(portID: id, relay)
                    channel.closeFuture.whenComplete { [self] _ in
                        session.unregister(id)
                        ports[id] = nil
                    }
                    session.send(.done(.init(requestID: o.requestID, portID: id, local: relay.local)))
                case .failure(let error as IOError) where !o.exact && error.errnoCode == EADDRINUSE && port != 0 && port < UInt16.max:
                    openDatagram(o, session, port: port + 1)
                case .failure(let error):
                    fail(session, o.requestID, error, "open udp \(o.address.bracketed):\(port)")
                }
            }
    }

    private func connect(_ c: Frame.Connect, _ session: TunnelSession) {
        var local: Endpoint? = nil
        let id: UInt32
        guard pendingConnects < configuration.maxPendingConnects else {
            return fail(
                session, c.requestID, .limitExceeded, 0,
                "\(pendingConnects) connects already in progress (limit \(configuration.maxPendingConnects))")
        }
        if c.portID == 0 {
            if overPortLimit(session, c.requestID) { return }
            id = allocatePortID()
        } else {
            guard let port = ports[c.portID] else {
                return fail(session, c.requestID, .noSuchPort, 0, "no port \(c.portID)")
            }
            guard case .reserved(let reserved) = port else {
                return fail(session, c.requestID, .invalidState, 0, "port \(c.portID) is not an unconnected TCP port")
            }
            local = reserved.local
            reserved.close()  // rebound by the connecting socket below
            id = c.portID
        }
        ports[id] = .connecting
        pendingConnects += 1
        resolve(c.destination).whenComplete { [self] result in
            switch result {
            case .failure(let error):
                pendingConnects -= 1
                ports[id] = nil
                fail(session, c.requestID, error, "resolve \(c.destination.host)")
            case .success(let address):
                guard let ip = address.ipAddress.flatMap({ IPAddress($0) }),
                    configuration.policy.allowsConnect(to: ip, port: c.destination.port)
                else {
                    pendingConnects -= 1
                    ports[id] = nil
                    logger.warning("connect to \(c.destination) denied by policy")
                    return fail(session, c.requestID, .deniedByPolicy, EACCES, "\(c.destination) is not in this mediator's --allow list")
                }
                startConnect(id: id, requestID: c.requestID, to: address, from: local, session: session, label: c.destination)
            }
        }
    }

    private func startConnect(
        id: UInt32, requestID: UInt32, to address: SocketAddress, from local: Endpoint?, session: TunnelSession, label: Endpoint
    ) {
        var bootstrap = ClientBootstrap(group: eventLoop)
            .relayedStreamOptions()
            .connectTimeout(configuration.connectTimeout)
        if let local, case .ip(let ip) = local.host, let bindAddress = try? SocketAddress(ipAddress: ip, port: local.port) {
            bootstrap = bootstrap.bind(to: bindAddress)
        }
        bootstrap.connect(to: address).whenComplete { [self] result in
            pendingConnects -= 1
            switch result {
            case .failure(let error):
                ports[id] = nil
                fail(session, requestID, error, "connect to \(label)")
            case .success(let channel):
                guard session.isOpen, case .connecting = ports[id] else {
                    // CLOSE came while connecting: the CONNECT still gets its answer.
                    channel.close(promise: nil)
                    fail(session, requestID, .connectionReset, ECONNABORTED, "port \(id) was closed while connecting")
                    return
                }
                let relay = StreamRelay(portID: id, session: session)
                relay.onClose = { [weak self] _, _ in self?.ports[id] = nil }
                ports[id] = .stream(relay, channel)
                session.register(relay)
                let localEndpoint = channel.localAddress?.endpoint ?? Endpoint(.anyV4, 0)
                session.send(.done(.init(requestID: requestID, portID: id, local: localEndpoint)))
                channel.pipeline.addHandler(relay).whenFailure { _ in channel.close(promise: nil) }
            }
        }
    }

    private func resolve(_ destination: Endpoint) -> EventLoopFuture<SocketAddress> {
        switch destination.host {
        case .ip(let ip):
            return eventLoop.makeCompletedFuture { try SocketAddress(ipAddress: ip, port: destination.port) }
        case .name(let name):
            // getaddrinfo blocks: run it off the event loop.
            return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
                try SocketAddress.makeAddressResolvingHost(name, port: Int(destination.port))
            }
        }
    }

    private func listen(_ l: Frame.Listen, _ session: TunnelSession) {
        guard configuration.policy.listenEnabled else {
            logger.warning("listen on port \(l.portID) denied by policy (--allow-listen is off)")
            return fail(session, l.requestID, .deniedByPolicy, EACCES, "this mediator does not allow listening (--allow-listen)")
        }
        guard let port = ports[l.portID] else {
            return fail(session, l.requestID, .noSuchPort, 0, "no port \(l.portID)")
        }
        guard case .reserved(let reserved) = port else {
            return fail(session, l.requestID, .invalidState, 0, "port \(l.portID) is not an unconnected TCP port")
        }
        let fd: CInt
        do {
            fd = try reserved.takeForListening(backlog: Int32(max(1, min(Int(l.backlog), 4096))))
        } catch {
            ports[l.portID] = nil
            return fail(session, l.requestID, error, "listen on \(reserved.local)")
        }
        let listenerID = l.portID
        let local = reserved.local
        ServerBootstrap(group: eventLoop)
            .relayedStreamChildOptions()
            .childChannelInitializer { [self] child in
                accepted(child, listenerID: listenerID, session: session)
            }
            .withBoundSocket(fd)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard session.isOpen else {
                        channel.close(promise: nil)
                        return
                    }
                    ports[listenerID] = .listener(channel, local)
                    logger.info("listening on \(local) (port \(listenerID))")
                    session.send(.done(.init(requestID: l.requestID, portID: listenerID, local: local)))
                case .failure(let error):
                    ports[listenerID] = nil
                    fail(session, l.requestID, error, "listen on \(local)")
                }
            }
    }

    private func accepted(_ child: Channel, listenerID: UInt32, session: TunnelSession) -> EventLoopFuture<Void> {
        guard session.isOpen, case .listener = ports[listenerID] else {
            return child.close()
        }
        guard ports.count < configuration.maxPorts else {
            logger.warning("refusing a connection on port \(listenerID): the session holds its limit of \(configuration.maxPorts) ports")
            return child.close()
        }
        let id = allocatePortID()
        let relay = StreamRelay(portID: id, session: session)
        relay.onClose = { [weak self] _, _ in self?.ports[id] = nil }
        ports[id] = .stream(relay, child)
        session.register(relay)
        let peer = child.remoteAddress?.endpoint ?? Endpoint(.anyV4, 0)
        // ACCEPTED goes out before any DATA of the new port.
        session.send(.accepted(.init(listenerID: listenerID, portID: id, peer: peer)))
        return child.pipeline.addHandler(relay)
    }

    private func close(_ c: Frame.Close, _ session: TunnelSession) {
        guard let port = ports.removeValue(forKey: c.portID) else {
            return fail(session, c.requestID, .noSuchPort, 0, "no port \(c.portID)")
        }
        var local = Endpoint(.anyV4, 0)
        switch port {
        case .reserved(let r):
            local = r.local
            r.close()
        case .stream(let relay, let channel):
            local = channel.localAddress?.endpoint ?? local
            relay.closeByRequest()
        case .connecting:
            ports[c.portID] = nil
        case .listener(let channel, let l):
            local = l
            channel.close(promise: nil)
        case .datagram(let relay, let channel):
            local = relay.local
            session.unregister(c.portID)
            channel.close(promise: nil)
        }
        session.send(.done(.init(requestID: c.requestID, portID: c.portID, local: local)))
    }
}
