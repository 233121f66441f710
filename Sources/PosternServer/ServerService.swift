import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PosternCore
import PosternPacket
import PosternPcap
import PosternSOCKS
import PosternTunnel
import PosternWire

/// `postern server`: the service port where mediators dial in, the forwards, and the admin API.
public final class ServerService: @unchecked Sendable {
    // All mutable state lives on `eventLoop`: one loop carries every session, forward and relay, so
    // nothing is shared between threads (docs/architecture.md).
    private let configuration: ServerConfiguration
    private let group: MultiThreadedEventLoopGroup
    public let eventLoop: EventLoop
    var logger: Logger
    let registry: MediatorRegistry
    private var channels: [Channel] = []
    private var nextSessionID: UInt64 = 1
    /// Sessions still in the handshake, by id, and which to drop when there are too many.
    private var handshaking: [UInt64: TunnelSession] = [:]
    private var unauthenticated: UnauthenticatedConnections
    private var random = SystemRandomNumberGenerator()
    private var unauthenticatedDrops = 0
    private var failedProofs: FailedProofThrottle
    var forwards: [any Forward] = []
    /// The forwards the configuration wants now, read again on each reload (set by the command line:
    /// the config file and `--forward` flags; throws when the file is broken).
    public var wantedForwards: (() throws -> [ForwardSpec])?
    /// The reload in progress: the next one starts when it is done (a burst of SIGHUPs runs one at a time).
    var reloadQueue: EventLoopFuture<Void>?
    /// Forwards added through the API (`ctl forwards add`), by spec text: a reload leaves them alone.
    var runtimeForwards: Set<String> = []
    var socksListeners: [SOCKSListener] = []
    /// What the SOCKS5 listeners share now (`--socks-users`), replaced by each reload.
    var socksSettings: SOCKSSettings
    /// Whether listeners off loopback may run without accounts (`--socks-no-auth`), as of the last reload.
    var socksNoAuth: Bool
    /// SOCKS5 listeners added through the API (`ctl forwards add socks:…`): a reload leaves them alone.
    var runtimeSOCKS: Set<SOCKSListenerSpec> = []
    /// The whole configuration, read again on each reload: its forwards and SOCKS5 listeners are
    /// applied (the other settings need a restart). When set, it is used instead of `wantedForwards`.
    public var wantedConfiguration: (() throws -> ServerConfiguration)?
    /// `--pcap`: where forwarded connections are recorded.
    private var recorder: PcapRecorder?
    /// `ctl capture`: recordings of single forwards, started and stopped at run time.
    lazy var captures = ForwardCaptures(settings: .init(directory: configuration.tunStateDirectory + "/captures"))
    private let finished: EventLoopPromise<Void>
    /// Where the service port and admin API are actually bound (port 0 picks one).
    public private(set) var boundService: SocketAddress?
    public private(set) var boundAdmin: SocketAddress?
    /// The service port number over UDP, for UDP channels (nil when off or it could not be bound).
    public private(set) var boundDatagram: SocketAddress?
    private var datagramChannel: Channel?
    /// Writes the UDP channel datagrams of every session to `datagramChannel`, one flush per loop pass.
    private var datagramWriter: DatagramWriteBatcher?
    private var datagramHandler: ServiceDatagramHandler?
    /// The datagram paths of established sessions, by session id: where UDP channel datagrams go.
    private var datagramPaths: [UInt64: UDPChannelDatagramPath] = [:]
    public let metrics = ServerMetrics()
    private let startedAt = Date()
    private let startedAtDeadline = NIODeadline.now()
    public private(set) var boundMetrics: SocketAddress?
    /// TUN mode (`--tun`), nil when off.
    let tunMode: ServerTunMode?

    public init(configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.socksSettings = configuration.socksSettings
        self.socksNoAuth = configuration.socksNoAuth
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.eventLoop = group.next()
        self.registry = MediatorRegistry(events: EventLog(clock: { Date() }), logger: logger)
        registry.maxMediators = configuration.maxMediators
        registry.probeTimeout = configuration.nameProbeTimeout
        self.unauthenticated = UnauthenticatedConnections(
            maxTotal: configuration.maxUnauthenticated, maxPerSource: configuration.maxUnauthenticatedPerAddress)
        self.failedProofs = FailedProofThrottle(burst: configuration.maxFailedProofs, window: configuration.failedProofWindow)
        self.finished = eventLoop.makePromise()
        self.tunMode =
            configuration.tunEnabled
            ? ServerTunMode(mtu: configuration.tunMTU, stateDirectory: configuration.tunStateDirectory, logger: logger) : nil
        registry.tunMode = tunMode
    }

    /// Binds everything; fails (with the reason) if any listening socket cannot be had.
    public func start() async throws {
        try await eventLoop.flatSubmit { [self] in startOnLoop() }.get()
    }

    public func run() async throws {
        try await finished.futureResult.get()
        try? await group.shutdownGracefully()
    }

    public func stop() {
        eventLoop.execute { [self] in
            // Undo TUN mode's changes before anything else: the process may exit before sessions close.
            tunMode?.stopAll()
            for link in registry.links.values { link.session.goAway(.shuttingDown, "server stopping") }
            for f in forwards { f.stop() }
            captures.stopAll(reason: "the server stopped")
            for s in socksListeners { s.stop() }
            for c in channels { c.close(promise: nil) }
            // Let GOAWAY frames reach the wire before the loop goes.
            eventLoop.scheduleTask(in: .milliseconds(100)) { self.finished.succeed(()) }
        }
    }

    private func startOnLoop() -> EventLoopFuture<Void> {
        if let warning = configuration.secrets.sharedSecretWarning { logger.warning("\(warning)") }
        var steps: [EventLoopFuture<Void>] = []
        if let pcap = configuration.pcap {
            do {
                recorder = try PcapRecorder(path: pcap.path, maxBytes: pcap.maxBytes, maxFiles: pcap.maxFiles)
                tunMode?.recorder = recorder
                logger.info("recording forwarded traffic into \(pcap.path) (rotated at \(pcap.maxBytes) bytes, \(pcap.maxFiles) files)")
            } catch {
                return eventLoop.makeFailedFuture(error)
            }
        }
        steps.append(bindServicePort())
        if let admin = configuration.admin { steps.append(bindAdmin(admin)) }
        if let endpoint = configuration.metrics { steps.append(bindMetrics(endpoint)) }
        for spec in configuration.forwards {
            do {
                let forward = try makeForward(spec)
                forwards.append(forward)
                steps.append(forward.start().flatMapErrorThrowing { throw Self.bindError(spec.listen, "forward \(spec)", $0) })
            } catch {
                steps.append(eventLoop.makeFailedFuture(error))
            }
        }
        for spec in configuration.socks {
            let listener = makeSOCKSListener(spec)
            socksListeners.append(listener)
            steps.append(listener.start().flatMapErrorThrowing { throw Self.bindError(spec.listen, "\(spec)", $0) })
        }
        registry.udpFlowLimits = udpFlowLimits
        tunMode?.cleanLeftovers()
        registry.whenAttached { [self] link in
            tunMode?.attach(link)
            for forward in forwards where forward.spec.mediator == link.name { attach(forward, to: link) }
        }
        return EventLoopFuture.andAllSucceed(steps, on: eventLoop)
    }

    func attach(_ forward: any Forward, to link: MediatorLink) {
        forward.attach(link)
        link.onClose { [weak forward] _ in forward?.detach(link) }
    }

    /// The forward a `ctl capture` names: by its spec as `ctl forwards` shows it, or by its listening
    /// address (`0.0.0.0:8080`, `acme/0.0.0.0:9090`).
    func forward(named name: String) -> (any Forward)? {
        forwards.first { $0.spec.text == name }
            ?? forwards.first { f in
                let listen = "\(f.spec.listen)"
                return name == listen || name == "\(f.spec.mediator)/\(listen)"
            }
    }

    func makeSOCKSListener(_ spec: SOCKSListenerSpec) -> SOCKSListener {
        SOCKSListener(spec: spec, settings: socksSettings, registry: registry, eventLoop: eventLoop, logger: logger)
    }

    func makeForward(_ spec: ForwardSpec) throws -> any Forward {
        // The composition root: the one place the forwards' clock is the real one.
        let now: () -> NIODeadline = { .now() }
        switch (spec.transport, spec.direction) {
        case (.tcp, .toMediator):
            let forward = TCPForwardToMediator(spec: spec, registry: registry, eventLoop: eventLoop, logger: logger, now: now)
            let timer = metrics.connectTimer(forward: spec.description)
            forward.connectLatency = { timer.recordNanoseconds($0.nanoseconds) }
            forward.recorder = recorder
            forward.gate = AcceptGate(pauseAt: configuration.connectAdmission.limit)
            return forward
        case (.tcp, .fromMediator):
            let forward = TCPForwardFromMediator(spec: spec, registry: registry, eventLoop: eventLoop, logger: logger)
            forward.recorder = recorder
            return forward
        case (.udp, .toMediator):
            let forward = try UDPForwardToMediator(
                spec: spec, registry: registry, eventLoop: eventLoop, limits: udpFlowLimits, now: now, logger: logger)
            forward.recorder = recorder
            return forward
        case (.udp, .fromMediator):
            let forward = UDPForwardFromMediator(
                spec: spec, registry: registry, eventLoop: eventLoop, limits: udpFlowLimits, now: now, logger: logger)
            forward.recorder = recorder
            return forward
        }
    }

    private var udpFlowLimits: DatagramFlowLimits {
        .init(maxBacklog: configuration.udpFlowBacklog, idleTimeout: configuration.udpIdleTimeout, maxFlows: configuration.udpMaxFlows)
    }

    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    static func bindError(_ endpoint: some CustomStringConvertible, _ what: String, _ error: Error) -> StartError {
        if let io = error as? IOError {
            return StartError(description: "\(what): cannot listen on \(endpoint): \(String(cString: strerror(io.errnoCode)))")
        }
        return StartError(description: "\(what): cannot listen on \(endpoint): \(error)")
    }

    private func bindServicePort() -> EventLoopFuture<Void> {
        let configuration = configuration
        return ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 512 * 1024, high: 2 * 1024 * 1024))
            .childChannelOption(ChannelOptions.recvAllocator, value: RelayBuffers.tunnelAllocator)
            .childChannelInitializer { [self] channel in
                do {
                    let transport = try configuration.transport.serverConnection()
                    guard let session = makeSession(from: channel.remoteAddress) else {
                        return channel.close()
                    }
                    session.transport = transport
                    return channel.pipeline.addHandlers(
                        transport.handlers + [
                            FrameDecoderHandler(maxPayload: configuration.settings.maxPayload),
                            session,
                        ])
                } catch {
                    logger.error("cannot set up the tunnel transport: \(error)")
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(to: SocketAddress(configuration.listen))
            .map { [self] channel in
                channels.append(channel)
                boundService = channel.localAddress
                logger.info(
                    "service port \(channel.localAddress?.display ?? "?") (\(configuration.transport.name)); secrets: \(configuration.secrets)"
                )
            }
            .flatMapErrorThrowing { throw Self.bindError(configuration.listen, "service port", $0) }
            .flatMap { [self] in bindDatagramPort() }
    }

    /// The service port's address and number over UDP, for the sessions' UDP channels. Not fatal: a
    /// server that cannot bind it carries every datagram on the TCP channel, as version 1 did.
    private func bindDatagramPort() -> EventLoopFuture<Void> {
        guard configuration.udpChannelEnabled, let address = boundService else { return eventLoop.makeSucceededVoidFuture() }
        let handler = ServiceDatagramHandler { [weak self] id in self?.datagramPaths[id] }
        return DatagramBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .batchedDatagramOptions(receiveOffload: true)
            .channelInitializer { channel in DatagramChecksumFilter.attach(to: channel).flatMap { channel.pipeline.addHandler(handler) } }
            .bind(to: address)
            .map { [self] channel in
                channels.append(channel)
                datagramChannel = channel
                datagramWriter = DatagramWriteBatcher(channel: channel, segmentation: RelayBuffers.channelSegmentation)
                datagramHandler = handler
                registry.unroutedDatagrams = { [weak handler] in handler?.stray ?? 0 }
                boundDatagram = channel.localAddress
                logger.info("UDP channels on \(channel.localAddress?.display ?? "?")/udp")
            }
            .recover { [self] error in
                logger.warning("UDP channels off: cannot bind \(address.display)/udp (\(error)); datagrams take the TCP channel")
            }
    }

    /// UDP channel datagrams that named no established session (scans, garbage, old sessions).
    public var strayDatagrams: UInt64 { datagramHandler?.stray ?? 0 }

    /// A session for a new connection from `address`, or nil when it must be closed at once (too
    /// many unauthenticated connections, all further along).
    private func makeSession(from address: SocketAddress?) -> TunnelSession? {
        let id = nextSessionID
        nextSessionID += 1
        // One source is one IP address (its port changes with every connection).
        let source = address?.ipAddress ?? "?"
        // An address that has just failed too many proofs is closed before TLS costs anything
        // (said once per burst, when it was closed).
        guard failedProofs.admits(source, now: .now()) else { return nil }
        switch unauthenticated.admit(id, from: source, using: &random) {
        case .refused(let why):
            droppedUnauthenticated("refusing a connection from \(source): \(why)")
            return nil
        case .admitted(let evicted):
            for victim in evicted {
                droppedUnauthenticated(
                    "more than \(configuration.maxUnauthenticated) unauthenticated connections, or \(configuration.maxUnauthenticatedPerAddress) from \(source); dropping one that got least far"
                )
                handshaking.removeValue(forKey: victim)?.goAway(.limitExceeded, Self.droppedMessage)
            }
        }
        let secrets = configuration.secrets
        let machine = ServerSessionStateMachine(
            settings: configuration.settings, sessionID: id, serverNonce: Nonce.make(), secretFor: { secrets.secret(for: $0) })
        let session = TunnelSession(
            machine: machine, settings: configuration.settings, eventLoop: eventLoop, logger: logger, now: { .now() })
        let link = MediatorLink(session: session, registry: registry, connectedAt: Date(), udpChannel: configuration.udpChannel)
        link.maxPorts = configuration.maxPortsPerSession
        link.admission = ConnectAdmission(settings: configuration.connectAdmission)
        session.delegate = link
        handshaking[id] = session
        let began = NIODeadline.now()
        session.onHandshakeProgress = { [self] stage in unauthenticated.advance(id, to: stage) }
        link.onEstablished { [self] in
            handshaking[id] = nil
            unauthenticated.remove(id)
            session.onHandshakeProgress = nil
            metrics.handshakeTook(.now() - began)
            guard let writer = datagramWriter, let info = link.info else { return }
            datagramPaths[id] = link.datagramPath
            // All sessions share the socket, and its writes are flushed once per event-loop pass.
            link.datagramPath.start(sessionID: info.sessionID, keys: info.keys) { bytes, to in
                writer.write(AddressedEnvelope(remoteAddress: to, data: bytes))
            }
        }
        link.onClose { [self] _ in
            handshaking[id] = nil
            unauthenticated.remove(id)
            session.onHandshakeProgress = nil
            datagramPaths[id] = nil
        }
        let events = registry.events
        link.onClose { [logger] end in
            // A connection dropped to make room is counted, and logged, by `droppedUnauthenticated`:
            // a line each would let a connection flood flood the log.
            if link.info == nil, end.message != Self.droppedMessage {
                // Never authenticated: say why once, with the address, and keep serving others.
                let from = session.remoteAddress?.display ?? "?"
                logger.warning("refused connection from \(from): \(end)")
                events.post(ServerEvent(mediator: nil, kind: "refused", detail: "\(from): \(end)"))
            }
        }
        link.onClose { [self] end in
            // Our own refusal of what it claimed: a guess at a secret, a name or a certificate.
            guard link.info == nil, !end.byPeer, [.authenticationFailed, .unknownMediator].contains(end.code) else { return }
            failedProof(from: source)
        }
        return session
    }

    private static let droppedMessage = "too many unauthenticated connections"

    private func failedProof(from source: String) {
        guard case .closed(let closedFor) = failedProofs.failedProof(from: source, now: .now()) else { return }
        let message =
            "too many failed proofs: \(configuration.maxFailedProofs) from \(source) within \(configuration.failedProofWindow.seconds) s; closing its new connections for \((closedFor.nanoseconds + 999_999_999) / 1_000_000_000) s (\(failedProofs.refusedConnections) closed so far)"
        logger.warning("\(message)")
        registry.events.post(ServerEvent(mediator: nil, kind: "throttled", detail: message))
    }

    /// Logged at the 1st, 10th, 100th… time: a flood of connections must not flood the log too.
    private func droppedUnauthenticated(_ message: String) {
        unauthenticatedDrops += 1
        var n = unauthenticatedDrops
        while n >= 10, n % 10 == 0 { n /= 10 }
        if n == 1 { logger.notice("\(message) (\(unauthenticatedDrops) dropped so far)") }
    }

    private func bindAdmin(_ endpoint: ListenAddress) -> EventLoopFuture<Void> {
        let limits = configuration.adminLimits
        let connections = AdminConnections(limit: limits.maxConnections)
        let token = configuration.adminToken.map(AdminToken.init)
        if token == nil { logger.warning("the admin API has no token: it will refuse every request") }
        return ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                if case .refused(let first) = connections.admit() {
                    if first { logger.warning("admin API: \(limits.maxConnections) connections open, closing new ones") }
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.release() }
                // The port and address this client reached, for the Host check (port 0 in tests).
                let local = channel.localAddress
                let hosts = AdminHostRule(
                    port: UInt16(local?.port ?? Int(endpoint.port)),
                    addresses: [endpoint.address] + (local?.ipAddress.flatMap(IPAddress.init).map { [$0] } ?? []))
                let access = AdminAccess(token: token, hosts: hosts)
                if let transport = configuration.adminTransport {
                    do {
                        try channel.pipeline.syncOperations.addHandlers(try transport.serverConnection().handlers)
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                return channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(
                        AdminAPI(
                            registry: self.registry, access: access, limits: limits, logger: self.logger, status: { self.status() },
                            metrics: self.metrics, reload: { self.reload() },
                            changeForward: { op, spec in op == "add" ? self.addForward(spec) : self.removeForward(spec) },
                            captures: self.captures, findForward: { self.forward(named: $0) },
                            changeSOCKS: { op, spec in op == "add" ? self.addSOCKS(spec) : self.removeSOCKS(spec) }))
                }
            }
            .bind(to: SocketAddress(endpoint))
            .map { [self] channel in
                channels.append(channel)
                boundAdmin = channel.localAddress
                logger.info("admin API on \(configuration.adminTransport == nil ? "http" : "https")://\(endpoint)")
            }
            .flatMapErrorThrowing { throw Self.bindError(endpoint, "admin API", $0) }
    }

    /// `--metrics`: the Prometheus text without the admin token, on its own address.
    private func bindMetrics(_ endpoint: ListenAddress) -> EventLoopFuture<Void> {
        let limits = configuration.adminLimits
        let connections = AdminConnections(limit: limits.maxConnections)
        return ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                if case .refused(let first) = connections.admit() {
                    if first { logger.warning("metrics endpoint: \(limits.maxConnections) connections open, closing new ones") }
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.release() }
                return channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsEndpoint(idleTimeout: limits.idleTimeout) { self.metrics.text(self.status()) })
                }
            }
            .bind(to: SocketAddress(endpoint))
            .map { [self] channel in
                channels.append(channel)
                boundMetrics = channel.localAddress
                logger.info("metrics on http://\(endpoint)/metrics (no token)")
            }
            .flatMapErrorThrowing { throw Self.bindError(endpoint, "metrics endpoint", $0) }
    }

    /// The server now: every mediator seen since start (connected or not) and every forward with
    /// its state and counters. Runs on the event loop, which owns all of it.
    func status() -> ServerStatus {
        eventLoop.preconditionInEventLoop()
        var mediators: [ServerStatus.Mediator] = []
        let iso = ISO8601DateFormatter()
        for (name, sessions) in registry.sessionsByName.sorted(by: { $0.key < $1.key }) {
            var m = ServerStatus.Mediator(
                name: name, connected: false, sessions: sessions, ports: 0, bytesIn: 0, bytesOut: 0, datagramPath: "tcp", udpSent: 0,
                udpReceived: 0)
            if let link = registry.link(name) {
                let c = link.datagramPath.counters
                m.connected = true
                m.from = link.from
                m.connectedAt = iso.string(from: link.connectedAt)
                m.ports = link.ports.count
                m.bytesIn = link.session.bytesIn
                m.bytesOut = link.session.bytesOut
                m.datagramPath = link.datagramPath.isUDPUp ? "udp" : "tcp"
                m.udpSent = c.sent
                m.udpReceived = c.received
                m.keepaliveRTTSeconds = link.session.keepaliveRoundTrip.map { Double($0.nanoseconds) / 1e9 }
                m.udpKeepaliveRTTSeconds = link.datagramPath.roundTrip.map { Double($0.nanoseconds) / 1e9 }
                if let relay = registry.tunMode?.tun(of: link)?.relay {
                    var ends = ["server": relay.counters]
                    if let stats = link.mediatorTunStats { ends["mediator"] = PacketCounters(stats) }
                    m.tunPackets = ends
                }
            }
            mediators.append(m)
        }
        let forwards = forwards.map { f -> ServerStatus.Forward in
            let c = f.counters
            let (state, reason) = ServerStatus.Forward.state(
                listening: c.listening, failure: c.failure, mediatorConnected: registry.link(f.spec.mediator) != nil,
                listensOnServer: f.spec.direction == .toMediator)
            return ServerStatus.Forward(
                spec: f.spec.description, mediator: f.spec.mediator, transport: f.spec.transport == .tcp ? "tcp" : "udp", state: state,
                reason: reason, connectionsOpen: c.connectionsOpen, connectionsTotal: c.connectionsTotal,
                bytesToMediator: c.bytesToMediator,
                bytesFromMediator: c.bytesFromMediator, refusals: c.refusals, policyDenials: c.policyDenials, errors: c.errors,
                rateLimitDrops: c.rateLimitDrops)
        }
        var status = ServerStatus(
            version: configuration.softwareVersion, startedAt: iso.string(from: startedAt),
            uptimeSeconds: Double((NIODeadline.now() - startedAtDeadline).nanoseconds) / 1e9, mediators: mediators, forwards: forwards,
            process: .current())
        status.socks = socksListeners.map { l in
            var state = "listening"
            var reason: String?
            if let failure = l.failure {
                (state, reason) = ("failed", failure)
            } else if !l.listening {
                state = "starting"
            } else if registry.link(l.spec.mediator) == nil {
                (state, reason) = ("waiting", "mediator '\(l.spec.mediator)' is not connected")
            }
            return ServerStatus.SOCKS(
                spec: "socks:\(l.spec.listen)=\(l.spec.mediator)", mediator: l.spec.mediator, state: state, reason: reason,
                authentication: l.settings.users == nil ? "none" : "username/password", connectionsOpen: l.connectionsOpen,
                connectionsTotal: l.connectionsTotal, handshaking: l.handshaking, refusals: UInt64(l.turnedAway))
        }
        return status
    }
}
