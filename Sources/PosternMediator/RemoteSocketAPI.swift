import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// Executes the server's requests on this host's real sockets (docs/protocol.md §5): the remote
/// socket API of DESIGN.md. One instance per session; its ports die with the session. What may happen
/// to which port is decided by `MediatorPortTable`; this class does the socket work (bind, resolve,
/// connect, listen, accept) and answers.
final class RemoteSocketAPI: TunnelSessionDelegate {
    /// The sockets the port table holds for each kind of port.
    enum Handles: MediatorPortHandles {
        typealias Reserved = ReservedSocket
        typealias Stream = (relay: StreamRelay, channel: Channel)
        typealias Listener = (channel: Channel, local: Endpoint)
        typealias Datagram = (relay: DatagramPort, channel: Channel)
    }

    private let configuration: MediatorConfiguration
    private let eventLoop: EventLoop
    private var logger: Logger
    private let now: () -> NIODeadline
    private(set) var ports: MediatorPortTable<Handles>
    var onEstablished: ((TunnelSession, EstablishedSession) -> Void)?
    var onClosed: ((SessionEnd) -> Void)?
    /// How the session's datagrams travel (`UDPChannelDatagramPath`, set by `MediatorService`); nil:
    /// DATAGRAM frames on the TCP channel.
    var datagramPath: DatagramPath?
    /// `--pcap`: the LAN sockets' traffic is recorded here too.
    var recorder: PcapRecorder?
    /// TUN mode, when the operator allows it (`--tun`): answers TUN, takes PACKET frames.
    var tun: MediatorTun?
    /// ICMP echo (ECHO, docs/protocol.md §11), as this host allows it.
    var icmpEcho: ICMPEcho?
    /// ECHOs sent and not yet answered (at most `ICMPEcho.maxInFlight`).
    private(set) var echoesInFlight = 0
    /// Requests refused for the port limit this session: a user spraying a `udp:` forward from new
    /// source ports makes one per datagram, so they are logged at the 1st and every 1,000th.
    private var refusedForPortLimit: UInt64 = 0

    /// `now` is the clock of the request rate.
    init(configuration: MediatorConfiguration, eventLoop: EventLoop, logger: Logger, now: @escaping () -> NIODeadline) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.now = now
        self.ports = MediatorPortTable(
            limits: MediatorPortLimits(
                maxPorts: configuration.maxPorts, maxPendingConnects: configuration.maxPendingConnects,
                maxRequestRate: configuration.maxRequestRate),
            policy: configuration.policy, now: now(), takesServerPortIDs: configuration.pipelinedConnects)
    }

    // MARK: - TunnelSessionDelegate

    func sessionEstablished(_ session: TunnelSession, _ info: EstablishedSession) {
        onEstablished?(session, info)
    }

    func session(_ session: TunnelSession, received frame: Frame) {
        switch frame {
        case .open(let o): open(o, session)
        case .redirect(let r): redirect(r, session)
        case .connect(let c): connect(c, session)
        case .listen(let l): listen(l, session)
        case .close(let c): close(c, session)
        case .tun(let t):
            guard let tun, let path = datagramPath as? UDPChannelDatagramPath else {
                logger.warning("the server asked for TUN mode, which this mediator does not offer (no --tun)")
                session.send(.failed(.init(requestID: t.requestID, code: .deniedByPolicy, errno: 0, message: "TUN mode is off (no --tun)")))
                return
            }
            tun.start(t, session: session, path: path)
        case .packet(let p):
            tun?.packetFrame(p.bytes)
        case .tunClose(let c):
            tun?.close(c)
        case .echo(let e):
            echo(e, session)
        default:
            session.goAway(.protocolError, "the server sent \(frame.name), which only a mediator sends")
        }
    }

    func sessionClosed(_ session: TunnelSession, _ end: SessionEnd) {
        tun?.stop()
        for port in ports.sessionClosed() {
            switch port {
            case .reserved(let r), .startingToListen(let r): r.close()
            case .listener(let l): l.channel.close(promise: nil)
            case .datagram(let d): d.channel.close(promise: nil)
            case .stream, .connecting, .opening: break  // relays were told by the session
            }
        }
        onClosed?(end)
    }

    // MARK: - Answers

    /// FAILED for a request the port table refused; the refusals an operator should know of are logged.
    private func refuse(_ session: TunnelSession, _ requestID: UInt32, _ refusal: MediatorPortRefusal) {
        switch refusal {
        case .requestRate(let limit):
            let refused = ports.refusedForRate
            if refused == 1 || refused % 1000 == 0 {
                logger.warning("request rate over \(limit)/s: \(refused) requests refused this session")
            }
        case .portLimit(let limit):
            // Every number a peer can make us hold is bounded (DESIGN.md, "Security stance").
            refusedForPortLimit += 1
            if refusedForPortLimit == 1 || refusedForPortLimit % 1000 == 0 {
                logger.warning(
                    "refusing requests: this session already holds \(ports.count) ports (limit \(limit)); \(refusedForPortLimit) refused so far"
                )
            }
        case .portIDsExhausted:
            logger.warning("refusing a request: \(refusal.message)")
        default:
            break
        }
        fail(session, requestID, refusal.code, refusal.errno, refusal.message)
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
        // getaddrinfo's failure is a type of its own since NIO 2.6x, not a SocketAddressError case:
        // without this a name that does not resolve came back as internalError (docs/protocol.md §5.3).
        if let r = error as? SocketAddressError.UnknownHost {
            return (.resolveFailed, 0, "\(r)")
        }
        return (.internalError, 0, "\(error)")
    }

    // MARK: - Operations

    /// ECHO (§11): a name resolved here first (the LAN's view, like ping run on this host), while
    /// it counts against the bound on requests in flight; then `echoResolved`.
    private func echo(_ e: Frame.Echo, _ session: TunnelSession) {
        guard case .name(let name) = e.host else { return echoResolved(e, session) }
        guard echoesInFlight < ICMPEcho.maxInFlight else {
            return fail(
                session, e.requestID, .limitExceeded, 0, "too many ICMP echo requests in flight (limit \(ICMPEcho.maxInFlight))")
        }
        echoesInFlight += 1
        let lookUp = ICMPEcho.resolve(name, family: e.family, on: eventLoop)
        // The slot is the lookup's until getaddrinfo returns, even when the answer timed out.
        lookUp.finished.whenComplete { [self] _ in echoesInFlight -= 1 }
        lookUp.answer.whenComplete { [self] result in
            guard session.isOpen else { return }
            switch result {
            case .success(let address):
                var resolved = e
                resolved.host = .ip(address)
                echoResolved(resolved, session)
            case .failure(let error as ICMPEcho.Failure):
                logger.info("ICMP echo to \(e.host): \(error.description)")
                fail(session, e.requestID, error.code, error.errno, error.description)
            case .failure(let error):
                fail(session, e.requestID, error, "resolving \(e.host) for ICMP echo")
            }
        }
    }

    /// ECHO to an address: the policy first, then the bound on requests in flight, then the socket.
    private func echoResolved(_ e: Frame.Echo, _ session: TunnelSession) {
        guard let destination = e.destination, configuration.policy.allowsEcho(to: destination) else {
            logger.warning("ICMP echo to \(e.host) denied by policy")
            return fail(session, e.requestID, .deniedByPolicy, EACCES, "ICMP echo to \(e.host) is denied by policy")
        }
        guard echoesInFlight < ICMPEcho.maxInFlight else {
            return fail(
                session, e.requestID, .limitExceeded, 0, "too many ICMP echo requests in flight (limit \(ICMPEcho.maxInFlight))")
        }
        guard let icmpEcho else {
            return fail(session, e.requestID, .notSupported, 0, "ICMP echo is off on this mediator")
        }
        if case .unavailable(let why) = icmpEcho.mode {
            logger.warning("refusing an ICMP echo request: \(why)")
            return fail(session, e.requestID, .notSupported, EPERM, why)
        }
        echoesInFlight += 1
        icmpEcho.send(e, on: eventLoop).whenComplete { [self] result in
            echoesInFlight -= 1
            guard session.isOpen else { return }
            switch result {
            case .success(let reply):
                session.send(.echoReply(reply))
            case .failure(let error as ICMPEcho.Failure):
                fail(session, e.requestID, error.code, error.errno, error.description)
            case .failure(let error):
                fail(session, e.requestID, error, "ICMP echo to \(e.host)")
            }
        }
    }

    private func open(_ o: Frame.Open, _ session: TunnelSession) {
        let id: UInt32
        switch ports.open(at: o.address, now: now()) {
        case .failure(let refusal):
            if case .bindDenied = refusal {
                logger.warning("open \(o.transport) \(o.address.bracketed):\(o.port) denied by policy: \(refusal)")
            }
            return refuse(session, o.requestID, refusal)
        case .success(let newID): id = newID
        }
        switch o.transport {
        case .tcp:
            do {
                let reserved = try ReservedSocket.bind(address: o.address, port: o.port, exact: o.exact)
                guard ports.opened(id, reserved: reserved) else { return reserved.close() }
                logger.debug("opened tcp port \(id) at \(reserved.local)")
                session.send(.done(.init(requestID: o.requestID, portID: id, local: reserved.local)))
            } catch {
                ports.openFailed(id)
                fail(session, o.requestID, error, "open tcp \(o.address.bracketed):\(o.port)")
            }
        case .udp:
            openDatagram(
                UDPBind(
                    requestID: o.requestID, address: o.address, exact: o.exact, what: "open udp",
                    reportDenied: o.flags?.contains(.reportDenied) == true), session, id: id, port: o.port)
        }
    }

    /// REDIRECT (§5.2): a UDP port like OPEN's, once `--allow-redirect` permits it. Its datagrams take
    /// the session's datagram path like every UDP port's: the UDP channel while it is up.
    private func redirect(_ r: Frame.Redirect, _ session: TunnelSession) {
        switch ports.redirect(at: r.address, now: now()) {
        case .failure(let refusal):
            if refusal == .redirectDenied {
                logger.warning("redirect of \(r.address.bracketed):\(r.port) denied by policy (--allow-redirect is off)")
            } else if case .bindDenied = refusal {
                logger.warning("redirect of \(r.address.bracketed):\(r.port) denied by policy: \(refusal)")
            }
            refuse(session, r.requestID, refusal)
        case .success(let id):
            // A redirected port takes every LAN sender's datagrams, like a `udp:` forward's public
            // socket on the server, and gets its kernel buffer: with the default 208 KiB a burst of 100
            // LAN senders' 1,200-byte datagrams overflowed it (each costs ~2.3 KiB) before the loop read.
            openDatagram(
                UDPBind(
                    requestID: r.requestID, address: r.address, exact: r.exact, what: "redirect",
                    receiveBuffer: RelayBuffers.datagramSocketBuffer),
                session, id: id, port: r.port)
        }
    }

    /// What OPEN (UDP) and REDIRECT ask of `openDatagram`.
    private struct UDPBind {
        var requestID: UInt32
        var address: IPAddress
        var exact: Bool
        var what: String
        /// Kernel receive buffer to ask for; 0 keeps the system's default (208 KiB).
        var receiveBuffer: Int = 0
        /// OPEN asked for DENIED reports (§6.5).
        var reportDenied = false
    }

    private func openDatagram(_ o: UDPBind, _ session: TunnelSession, id: UInt32, port: UInt16) {
        let relay = DatagramPort(
            portID: id, path: datagramPath ?? TunnelDatagramPath(session: session), policy: configuration.policy,
            local: Endpoint(o.address, port),
            logger: session.logger)
        if o.reportDenied {
            relay.reportDenied = { [weak session] count in session?.send(.denied(.init(portID: id, count: count))) }
        }
        let recorder = self.recorder
        var bootstrap = DatagramBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 0)
            .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramAllocator)
        if o.receiveBuffer > 0 {
            bootstrap = bootstrap.channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: SocketOptionValue(o.receiveBuffer))
        }
        bootstrap
            .channelInitializer { channel in
                DatagramChecksumFilter.attach(to: channel).flatMapThrowing {
                    // --pcap: the tap sits before the port, so it sees what the socket sees.
                    if let recorder { try channel.pipeline.syncOperations.addHandler(PcapDatagramTap(recorder: recorder)) }
                    try channel.pipeline.syncOperations.addHandler(relay)
                }
            }
            .bind(host: o.address.description, port: Int(port))
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    relay.local = channel.localAddress?.endpoint ?? relay.local
                    guard ports.opened(id, datagram: (relay, channel)) else {
                        channel.close(promise: nil)
                        return
                    }
                    relay.path.attach(portID: id, relay)
                    channel.closeFuture.whenComplete { [self] _ in
                        session.unregister(id)
                        ports.released(id)
                    }
                    logger.debug("\(o.what) port \(id) at \(relay.local)")
                    session.send(.done(.init(requestID: o.requestID, portID: id, local: relay.local)))
                case .failure(let error as IOError) where !o.exact && error.errnoCode == EADDRINUSE && port != 0 && port < UInt16.max:
                    openDatagram(o, session, id: id, port: port + 1)
                case .failure(let error):
                    ports.openFailed(id)
                    fail(session, o.requestID, error, "\(o.what) \(o.address.bracketed):\(port)")
                }
            }
    }

    private func connect(_ c: Frame.Connect, _ session: TunnelSession) {
        let id: UInt32
        let local: Endpoint?
        switch ports.connect(portID: c.portID, now: now()) {
        case .failure(let refusal):
            if case .serverPortIDReused = refusal { logger.warning("refusing a pipelined connect: \(refusal)") }
            return refuse(session, c.requestID, refusal)
        case .success(let connect):
            id = connect.portID
            local = connect.from?.local
            connect.from?.close()  // rebound by the connecting socket below
        }
        let pipelined = PortIDRange.isServerChosen(id) ? pipelinedConnect(id, session) : nil
        resolve(c.destination).whenComplete { [self] result in
            switch result {
            case .failure(let error):
                if pipelined != nil, ports[id] == nil {
                    // Reset by the server while resolving: that is the answer (§5.3).
                    ports.connectFailed(id)
                    return refuse(session, c.requestID, .resetWhileConnecting(id))
                }
                ports.connectFailed(id)
                pipelined?.relay.abandon(how: "connect failed")
                fail(session, c.requestID, error, "resolve \(c.destination.host)")
            case .success(let address):
                let ip = address.ipAddress.flatMap { IPAddress($0) }
                if let refusal = ports.resolved(id, destination: c.destination, address: ip) {
                    // Whatever the server sent behind the CONNECT is dropped, never written (§5.3).
                    pipelined?.relay.abandon(how: "connect refused: \(refusal)")
                    switch refusal {
                    case .destinationDenied:
                        logger.warning("connect to \(c.destination) denied by policy")
                    case .protectedDestination:
                        logger.warning("connect to \(c.destination) denied by policy: \(refusal)")
                    default:
                        break
                    }
                    return refuse(session, c.requestID, refusal)
                }
                startConnect(
                    id: id, requestID: c.requestID, to: address, from: local, session: session, label: c.destination, pipelined: pipelined)
            }
        }
    }

    /// A pipelined CONNECT's port (§5.3): its relay exists and is registered before the connect
    /// starts, so what the server sends behind the CONNECT is kept (bounded by the window and 64
    /// frames, §6.3) and replayed once connected. A RESET from the server ends it and cancels the connect.
    final class PipelinedConnect {
        let relay: StreamRelay
        /// The connecting socket, from the bootstrap's initializer to the connect's end.
        var channel: Channel?
        init(relay: StreamRelay) { self.relay = relay }
    }

    private func pipelinedConnect(_ id: UInt32, _ session: TunnelSession) -> PipelinedConnect {
        let pipelined = PipelinedConnect(relay: StreamRelay(portID: id, session: session, pipelining: .connectingHere))
        pipelined.relay.onClose = { [weak self, weak pipelined] _, _ in
            guard let self else { return }
            if case .connecting? = ports[id] {
                // Reset by the server (or its kept frames broke a rule) before the socket was up.
                ports.pipelinedPortReset(id)
                pipelined?.channel?.close(promise: nil)
            }
            ports.released(id)
        }
        session.register(pipelined.relay)
        return pipelined
    }

    private func startConnect(
        id: UInt32, requestID: UInt32, to address: SocketAddress, from local: Endpoint?, session: TunnelSession, label: Endpoint,
        pipelined: PipelinedConnect? = nil
    ) {
        // A ClientBootstrap is a class: giving it a bind address or an initializer changes it for
        // every later connect. So the shared `connector` is never changed; a CONNECT that binds first
        // or is pipelined gets a bootstrap of its own, whose initializer records the connecting
        // channel (a RESET from the server closes it) and still sets the relayed options.
        var bootstrap = connector
        if let local, case .ip(let ip) = local.host, let bindAddress = try? SocketAddress(ipAddress: ip, port: local.port) {
            bootstrap = makeConnector().bind(to: bindAddress)
        }
        if let pipelined {
            if bootstrap === connector { bootstrap = makeConnector() }
            bootstrap = bootstrap.channelInitializer { channel in
                pipelined.channel = channel
                return channel.eventLoop.makeCompletedFuture { try channel.setRelayedStreamOptions() }
            }
        }
        bootstrap.connect(to: address).whenComplete { [self] result in
            pipelined?.channel = nil
            switch result {
            case .failure(let error):
                if pipelined != nil, ports[id] == nil {
                    // The server's RESET closed the socket: that is the answer, not the error it caused.
                    ports.connectFailed(id)
                    return refuse(session, requestID, .resetWhileConnecting(id))
                }
                ports.connectFailed(id)
                pipelined?.relay.abandon(how: "connect failed")
                fail(session, requestID, error, "connect to \(label)")
            case .success(let channel):
                let relay = pipelined?.relay ?? StreamRelay(portID: id, session: session)
                if let refusal = ports.connected(id, stream: (relay, channel)) {
                    // CLOSE came while connecting (or the session ended, or the server reset a
                    // pipelined port): the CONNECT still gets its answer.
                    channel.close(promise: nil)
                    return refuse(session, requestID, refusal)
                }
                if pipelined == nil {
                    relay.onClose = { [weak self] _, _ in self?.ports.released(id) }
                    session.register(relay)
                }
                let localEndpoint = channel.localAddress?.endpoint ?? Endpoint(.anyV4, 0)
                session.send(.done(.init(requestID: requestID, portID: id, local: localEndpoint)))
                if let recorder, let tap = PcapStreamTap(channel: channel, recorder: recorder, initiatedHere: true) {
                    try? channel.pipeline.syncOperations.addHandler(tap, position: .first)
                }
                // On the channel's loop (the bootstrap's): added at once, no future per connection.
                do {
                    try channel.pipeline.syncOperations.addHandler(relay)
                } catch {
                    channel.close(promise: nil)
                }
            }
        }
    }

    /// What connects every CONNECT that binds no address first (a forward's): made once, because
    /// each option given to a bootstrap costs allocations and closures. It is only read after.
    private lazy var connector = makeConnector()

    private func makeConnector() -> ClientBootstrap {
        ClientBootstrap(group: eventLoop)
            .relayedStreamOptions()
            .connectTimeout(configuration.connectTimeout)
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
        let reserved: ReservedSocket
        switch ports.listen(portID: l.portID, now: now()) {
        case .failure(let refusal):
            if refusal == .listenDenied {
                logger.warning("listen on port \(l.portID) denied by policy (--allow-listen is off)")
            }
            return refuse(session, l.requestID, refusal)
        case .success(let socket): reserved = socket
        }
        let fd: CInt
        do {
            fd = try reserved.takeForListening(backlog: Int32(max(1, min(Int(l.backlog), 4096))))
        } catch {
            ports.listenFailed(l.portID)
            return fail(session, l.requestID, error, "listen on \(reserved.local)")
        }
        let listenerID = l.portID
        let local = reserved.local
        ServerBootstrap(group: eventLoop)
            .relayedStreamChildOptions()
            .childChannelInitializer { [self] child in
                do {
                    try child.setRelayedStreamOptions()
                } catch {
                    return child.eventLoop.makeFailedFuture(error)
                }
                return accepted(child, listenerID: listenerID, session: session)
            }
            .withBoundSocket(fd)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    if let refusal = ports.listening(listenerID, listener: (channel, local)) {
                        // CLOSE came first (or the session ended): the LISTEN still gets its answer.
                        channel.close(promise: nil)
                        return refuse(session, l.requestID, refusal)
                    }
                    logger.info("listening on \(local) (port \(listenerID))")
                    session.send(.done(.init(requestID: l.requestID, portID: listenerID, local: local)))
                case .failure(let error):
                    ports.listenFailed(listenerID)
                    fail(session, l.requestID, error, "listen on \(local)")
                }
            }
    }

    private func accepted(_ child: Channel, listenerID: UInt32, session: TunnelSession) -> EventLoopFuture<Void> {
        let id: UInt32
        switch ports.accept(on: listenerID) {
        case .failure(.portLimit(let limit)):
            logger.warning("refusing a connection on port \(listenerID): the session holds its limit of \(limit) ports")
            return child.close()
        case .failure(let refusal):
            if refusal != .noSuchPort(listenerID) {
                logger.warning("refusing a connection on port \(listenerID): \(refusal)")
            }
            return child.close()
        case .success(let newID): id = newID
        }
        let relay = StreamRelay(portID: id, session: session)
        guard ports.accepted(id, stream: (relay, child)) else { return child.close() }
        relay.onClose = { [weak self] _, _ in self?.ports.released(id) }
        session.register(relay)
        let peer = child.remoteAddress?.endpoint ?? Endpoint(.anyV4, 0)
        // ACCEPTED goes out before any DATA of the new port.
        session.send(.accepted(.init(listenerID: listenerID, portID: id, peer: peer)))
        if let recorder, let tap = PcapStreamTap(channel: child, recorder: recorder) {
            try? child.pipeline.syncOperations.addHandler(tap, position: .first)
        }
        return child.pipeline.addHandler(relay)
    }

    private func close(_ c: Frame.Close, _ session: TunnelSession) {
        let port: MediatorPortTable<Handles>.Port
        switch ports.close(portID: c.portID) {
        case .failure(let refusal): return refuse(session, c.requestID, refusal)
        case .success(let closed): port = closed
        }
        var local = Endpoint(.anyV4, 0)
        switch port {
        case .reserved(let r), .startingToListen(let r):
            local = r.local
            r.close()
        case .stream(let s):
            local = s.channel.localAddress?.endpoint ?? local
            s.relay.closeByRequest()
        case .connecting, .opening:
            break
        case .listener(let l):
            local = l.local
            l.channel.close(promise: nil)
        case .datagram(let d):
            local = d.relay.local
            session.unregister(c.portID)
            d.channel.close(promise: nil)
        }
        session.send(.done(.init(requestID: c.requestID, portID: c.portID, local: local)))
    }
}
