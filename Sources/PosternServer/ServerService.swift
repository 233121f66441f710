import Foundation
import Logging
import NIOConcurrencyHelpers
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
    // All of this class's mutable state lives on `eventLoop`, the control loop (loop 0). Mediator
    // sessions (TunnelSession, MediatorLink, their relays) live on the loop their connection was
    // accepted onto, one of `loops` (`--threads`); whatever crosses between the two hops
    // (docs/architecture.md, "Threads").
    /// What the server started with (a reload compares what it reads against it).
    let configuration: ServerConfiguration
    private let group: MultiThreadedEventLoopGroup
    /// The control loop: registry, admin API, metrics, TUN mode, the forwards' bookkeeping.
    public let eventLoop: EventLoop
    /// Every loop of the server, the control loop first.
    public let loops: [EventLoop]
    /// Whether new sessions go to any loop (round robin) rather than the control loop. Off with one
    /// loop, and from the moment something that needs its sessions there is configured (`LoopPinning`).
    public private(set) var spreading: Bool
    /// The service port: with several loops, socket 0 accepts round robin onto all of them and
    /// socket 1 onto the control loop, and the kernel is steered to one of the two.
    private var serviceListener: SteeredListener?
    var logger: Logger
    let registry: MediatorRegistry
    private var channels: [Channel] = []
    private var nextSessionID: UInt64 = 1
    /// Sessions still in the handshake, by id, and which to drop when there are too many.
    private var handshaking: [UInt64: (session: TunnelSession, channel: Channel)] = [:]
    /// Admitted connections dropped to make room before their session (made on their own loop)
    /// reached `handshaking`.
    private var evictedBeforeArrival: Set<UInt64> = []
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
    /// The service port over UDP: one socket per loop (socket i on `loops[i]`), each with the handler
    /// that knows the established sessions of its loop and a writer for their datagrams (flushed once
    /// per pass of that loop). The kernel hands each datagram to the socket of the loop its session id
    /// names (`SessionLoopProgram`), so no datagram hops. Set once at start; read on any loop (a
    /// session registers with its loop's socket on that loop, before its WELCOME leaves, so even the
    /// mediator's first datagram finds it).
    private let datagramSocketsBox = NIOLockedValueBox<[DatagramSocket]>([])
    private typealias DatagramSocket = (handler: ServiceDatagramHandler, writer: DatagramWriteBatcher)
    private var datagramSockets: [DatagramSocket] { datagramSocketsBox.withLockedValue { $0 } }
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
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(configuration.threads, 1))
        self.loops = Array(group.makeIterator())
        self.eventLoop = loops[0]
        self.spreading = LoopPinning.spreads(threads: loops.count, reasons: Self.pinningReasons(configuration))
        self.registry = MediatorRegistry(events: EventLog(clock: { Date() }), logger: logger)
        registry.eventLoop = eventLoop
        registry.events.eventLoop = eventLoop
        registry.maxMediators = configuration.maxMediators
        registry.probeTimeout = configuration.nameProbeTimeout
        self.unauthenticated = UnauthenticatedConnections(
            maxTotal: configuration.maxUnauthenticated, maxPerSource: configuration.maxUnauthenticatedPerAddress)
        self.failedProofs = FailedProofThrottle(burst: configuration.maxFailedProofs, window: configuration.failedProofWindow)
        self.finished = eventLoop.makePromise()
        self.tunMode =
            configuration.tunEnabled
            ? ServerTunMode(mtu: configuration.tunMTU, stateDirectory: configuration.tunStateDirectory, logger: logger) : nil
        tunMode?.offload = configuration.tunOffload
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
            // A TUN start under way undoes its changes when done: finish only after that.
            let tunsStopped = tunMode?.stopAll(eventLoop: eventLoop) ?? eventLoop.makeSucceededVoidFuture()
            for link in registry.links.values { link.onLoop { link.session.goAway(.shuttingDown, "server stopping") } }
            for f in forwards { f.stop() }
            captures.stopAll(reason: "the server stopped")
            for s in socksListeners { s.stop() }
            for c in channels { c.close(promise: nil) }
            // Let GOAWAY frames reach the wire before the loop goes.
            eventLoop.scheduleTask(in: .milliseconds(100)) { tunsStopped.whenComplete { _ in self.finished.succeed(()) } }
        }
    }

    static func pinningReasons(_ configuration: ServerConfiguration) -> [String] {
        LoopPinning.reasons(
            forwards: configuration.forwards,
            socksListeners: configuration.socks.filter { socksChooses($0, configuration.socksSettings) }.count,
            tun: configuration.tunEnabled,
            pcap: configuration.pcap != nil)
    }

    private func startOnLoop() -> EventLoopFuture<Void> {
        if let warning = configuration.secrets.sharedSecretWarning { logger.warning("\(warning)") }
        warnUnknownMediators(forwards: configuration.forwards, socks: configuration.socks)
        let pinned = Self.pinningReasons(configuration)
        if loops.count > 1, !pinned.isEmpty {
            logger.notice(
                "\(loops.count) event loops, but mediator sessions stay on the first: \(pinned.joined(separator: ", ")) need them there (docs/architecture.md, \"Threads\")"
            )
        } else if loops.count > 1 {
            logger.info("\(loops.count) event loops: mediator sessions are spread over them")
        }
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
            if let tunMode { tunMode.attach(link) } else { noteTunOffer(of: link) }
            for forward in forwards where forward.spec.mediator == link.name { attach(forward, to: link) }
            for l in socksListeners where l.spec.mediator == link.name { l.attach(link) }
        }
        return EventLoopFuture.andAllSucceed(steps, on: eventLoop)
    }

    /// A mediator started with --tun offers TUN mode to this server, which runs without --tun and so
    /// never asks for it: logged once per session, so the operator learns why no tun device appears.
    private func noteTunOffer(of link: MediatorLink) {
        var told = false
        let tell: (MediatorEnvironment) -> Void = { [logger, weak link] environment in
            guard !told, environment.capabilities.contains(.tunOffered), let link else { return }
            told = true
            logger.notice(
                "mediator '\(link.name)' offers TUN mode (it runs with --tun), but this server runs without --tun: it stays in stream mode (start the server with --tun to route its LAN)"
            )
        }
        link.onEnvironment(tell)
        if let environment = link.environment { tell(environment) }
    }

    func attach(_ forward: any Forward, to link: MediatorLink) {
        eventLoop.preconditionInEventLoop()
        // A forward that needs its session on the control loop skips a session elsewhere: that one is
        // on its way out (`pin`), and its successor comes to the control loop.
        guard forward.runsOnAnyLoop || link.eventLoop === eventLoop else { return }
        forward.attach(link)
        let control = eventLoop
        link.onLoop {
            link.onClose { [weak forward] _ in
                if control.inEventLoop {
                    forward?.detach(link)
                } else {
                    control.execute { forward?.detach(link) }
                }
            }
        }
    }

    /// From now on new sessions go to the control loop, and the sessions of `mediator` (of every
    /// mediator when nil) that run elsewhere end, to come back there: something that needs them on
    /// the control loop (`LoopPinning`) was added at run time. A mediator reconnects at once.
    func pin(mediator: String?, because why: String) {
        eventLoop.preconditionInEventLoop()
        guard loops.count > 1 else { return }
        if spreading {
            spreading = false
            serviceListener?.steer(to: 1)
            logger.notice("new mediator sessions stay on the first event loop from now on: \(why) needs them there")
        }
        for forward in forwards where mediator == nil || forward.spec.mediator == mediator {
            forward.steer(toLoop: 0)
        }
        for l in socksListeners where mediator == nil || l.spec.mediator == mediator { l.steer(toLoop: 0) }
        for link in registry.openLinks where link.eventLoop !== eventLoop && (mediator == nil || link.name == mediator) {
            logger.notice("mediator '\(link.name)': ending its session on another event loop so it comes back on the first: \(why)")
            link.onLoop { link.session.goAway(.shuttingDown, "the server moves this mediator to another event loop; reconnect") }
        }
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

    /// `ctl capture`'s forward: its recorder is the control loop's, so its mediator's sessions come there.
    private func forwardToCapture(named name: String) -> (any Forward)? {
        guard let forward = forward(named: name) else { return nil }
        if forward.runsOnAnyLoop { pin(mediator: forward.spec.mediator, because: "ctl capture of \(forward.spec.text)") }
        return forward
    }

    func makeSOCKSListener(_ spec: SOCKSListenerSpec) -> SOCKSListener {
        let listener = SOCKSListener(
            spec: spec, settings: socksSettings, registry: registry, eventLoop: eventLoop, loops: loops, logger: logger)
        socksPinning([listener])
        return listener
    }

    /// Whether a SOCKS5 listener's connections may each choose their mediator (`USER@NAME`), so its
    /// accepting loop cannot follow one session: it keeps the sessions on the control loop.
    static func socksChooses(_ spec: SOCKSListenerSpec, _ settings: SOCKSSettings) -> Bool {
        settings.users?.mayChoose(otherThan: spec.mediator) == true
    }

    /// Pins every session to the control loop when one of `listeners`, with its accounts now, lets its
    /// clients choose their mediator (at start, for a listener added at run time, after a reload).
    func socksPinning(_ listeners: [SOCKSListener]) {
        for l in listeners where Self.socksChooses(l.spec, l.settings) {
            pin(mediator: nil, because: "SOCKS5 listener \(l.spec.listen) (its accounts may choose another mediator)")
        }
    }

    func makeForward(_ spec: ForwardSpec) throws -> any Forward {
        // The composition root: the one place the forwards' clock is the real one.
        let now: () -> NIODeadline = { .now() }
        if let why = LoopPinning.reason(for: spec) { pin(mediator: spec.mediator, because: why) }
        switch (spec.transport, spec.direction) {
        case (.tcp, .toMediator):
            let forward = TCPForwardToMediator(
                spec: spec, registry: registry, eventLoop: eventLoop, loops: loops, logger: logger, now: now)
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
                spec: spec, registry: registry, eventLoop: eventLoop, loops: loops, limits: udpFlowLimits, now: now, logger: logger)
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
        let spreading = spreading
        return SteeredListener.bind(to: SocketAddress(configuration.listen), count: loops.count > 1 ? 2 : 1, on: eventLoop) {
            [self] i in
            serviceBootstrap(childGroup: i == 0 && loops.count > 1 ? group : eventLoop)
        }
        .flatMap { [self] listener in
            serviceListener = listener
            return listener.steer(to: spreading ? 0 : 1).map { listener }
        }
        .map { [self] listener in
            channels.append(contentsOf: listener.channels)
            boundService = listener.localAddress
            logger.info(
                "service port \(listener.localAddress?.display ?? "?") (\(configuration.transport.name)); secrets: \(configuration.secrets)"
            )
        }
        .flatMapErrorThrowing { throw Self.bindError(configuration.listen, "service port", $0) }
        .flatMap { [self] in bindDatagramPort() }
    }

    /// One socket of the service port, accepting onto `childGroup`: every loop, or the control loop.
    private func serviceBootstrap(childGroup: EventLoopGroup) -> ServerBootstrap {
        ServerBootstrap(group: eventLoop, childGroup: childGroup)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 512 * 1024, high: 2 * 1024 * 1024))
            .childChannelOption(ChannelOptions.recvAllocator, value: RelayBuffers.tunnelAllocator)
            .childChannelInitializer { [self] channel in
                let address = channel.remoteAddress
                let loop = loops.firstIndex { $0 === channel.eventLoop } ?? 0
                // Admission is the control loop's (it counts every connection); the session is made on
                // the connection's own loop.
                guard channel.eventLoop !== eventLoop else {
                    return setUpSession(channel, admit(from: address, loop: 0))
                }
                return eventLoop.submit { [self] in admit(from: address, loop: loop) }
                    .hop(to: channel.eventLoop)
                    .flatMap { [self] id in setUpSession(channel, id) }
            }
    }

    private func setUpSession(_ channel: Channel, _ admitted: (id: UInt64, source: String)?) -> EventLoopFuture<Void> {
        guard let admitted else { return channel.close() }
        do {
            let transport = try configuration.transport.serverConnection()
            let session = makeSession(admitted.id, source: admitted.source, on: channel)
            session.transport = transport
            return channel.pipeline.addHandlers(
                transport.handlers + [
                    FrameDecoderHandler(maxPayload: configuration.settings.maxPayload),
                    session,
                ])
        } catch {
            logger.error("cannot set up the tunnel transport: \(error)")
            onControlLoop { [self] in
                handshaking[admitted.id] = nil
                evictedBeforeArrival.remove(admitted.id)
                unauthenticated.remove(admitted.id)
            }
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// Runs `f` on the control loop: at once when already there.
    private func onControlLoop(_ f: @escaping () -> Void) {
        if eventLoop.inEventLoop { f() } else { eventLoop.execute(f) }
    }

    /// The service port's address and number over UDP, for the sessions' UDP channels: one socket per
    /// loop in a reuseport group steered by the session id in each datagram. Not fatal: a server that
    /// cannot bind it carries every datagram on the TCP channel, as version 1 did.
    private func bindDatagramPort() -> EventLoopFuture<Void> {
        guard configuration.udpChannelEnabled, let address = boundService else { return eventLoop.makeSucceededVoidFuture() }
        let loops = loops
        let handlers = loops.map { ServiceDatagramHandler(eventLoop: $0) }
        return SteeredListener.bind(to: address, count: loops.count, on: eventLoop) { i in
            DatagramBootstrap(group: loops[i])
                .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .batchedDatagramOptions(receiveOffload: true)
                .channelInitializer { channel in
                    DatagramChecksumFilter.attach(to: channel).flatMap { channel.pipeline.addHandler(handlers[i]) }
                }
        }
        .flatMap { [self] (listener: SteeredListener) -> EventLoopFuture<SteeredListener> in
            guard loops.count > 1 else { return eventLoop.makeSucceededFuture(listener) }
            return SessionLoopProgram.attach(loops: loops.count, to: listener.channels[0]).map { listener }
                .flatMapErrorThrowing { error in
                    listener.close()
                    throw error
                }
        }
        .map { [self] listener in
            channels.append(contentsOf: listener.channels)
            let sockets = zip(handlers, listener.channels).map {
                ($0, DatagramWriteBatcher(channel: $1, segmentation: RelayBuffers.channelSegmentation))
            }
            datagramSocketsBox.withLockedValue { $0 = sockets }
            registry.unroutedDatagrams = { handlers.reduce(0) { $0 &+ $1.stray } }
            boundDatagram = listener.localAddress
            logger.info("UDP channels on \(listener.localAddress?.display ?? "?")/udp")
        }
        .recover { [self] error in
            logger.warning("UDP channels off: cannot bind \(address.display)/udp (\(error)); datagrams take the TCP channel")
        }
    }

    /// UDP channel datagrams that named no established session (scans, garbage, old sessions).
    public var strayDatagrams: UInt64 { datagramSockets.reduce(0) { $0 &+ $1.handler.stray } }

    /// A session for a new connection from `address`, or nil when it must be closed at once (too
    /// many unauthenticated connections, all further along).
    /// Its id names `loop`, the loop its session runs on (`SessionLoops`): the kernel hands that
    /// loop's UDP socket the session's UDP channel datagrams.
    private func admit(from address: SocketAddress?, loop: Int) -> (id: UInt64, source: String)? {
        eventLoop.preconditionInEventLoop()
        let id = SessionLoops.sessionID(atOrAfter: nextSessionID, loop: loop, loops: loops.count)
        nextSessionID = id + 1
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
                if let (session, channel) = handshaking.removeValue(forKey: victim) {
                    Self.drop(session, channel)
                } else {
                    // Admitted, but its session is still being made on its loop: dropped on arrival.
                    evictedBeforeArrival.insert(victim)
                }
            }
        }
        return (id, source)
    }

    /// Ends a connection dropped to make room: with GOAWAY once its session runs; one whose session
    /// has not started yet (it was made on another loop a moment ago) is closed.
    private static func drop(_ session: TunnelSession, _ channel: Channel) {
        let end = {
            if channel.isActive {
                session.goAway(.limitExceeded, droppedMessage)
            } else {
                channel.close(promise: nil)
            }
        }
        if session.eventLoop.inEventLoop { end() } else { session.eventLoop.execute(end) }
    }

    /// The session of an admitted connection, on its loop; what it tells the control plane hops there.
    private func makeSession(_ id: UInt64, source: String, on channel: Channel) -> TunnelSession {
        let loop = channel.eventLoop
        loop.preconditionInEventLoop()
        let secrets = configuration.secrets
        let machine = ServerSessionStateMachine(
            settings: configuration.settings, sessionID: id, serverNonce: Nonce.make(), secretFor: { secrets.secret(for: $0) })
        let session = TunnelSession(
            machine: machine, settings: configuration.settings, eventLoop: loop, logger: logger, now: { .now() })
        // WELCOME waits for the registry's word on the name (`MediatorRegistry.admit`), so a mediator
        // refused for it gets REFUSED and never believes it was connected.
        session.holdsWelcomeUntilAdmitted = true
        let link = MediatorLink(session: session, registry: registry, connectedAt: Date(), udpChannel: configuration.udpChannel)
        link.loopIndex = loops.firstIndex { $0 === loop } ?? 0
        link.maxPorts = configuration.maxPortsPerSession
        link.admission = ConnectAdmission(settings: configuration.connectAdmission)
        session.delegate = link
        onControlLoop { [self] in
            if evictedBeforeArrival.remove(id) != nil {
                Self.drop(session, channel)
            } else {
                handshaking[id] = (session, channel)
            }
        }
        let began = NIODeadline.now()
        session.onHandshakeProgress = { [self] stage in onControlLoop { [self] in unauthenticated.advance(id, to: stage) } }
        link.onEstablished { [self] in
            session.onHandshakeProgress = nil
            let took = NIODeadline.now() - began
            // Here, on the session's loop and before its WELCOME is flushed: its datagrams are read
            // and written by this loop's socket, which knows it before the mediator can send one.
            startDatagrams(of: link, id: id)
            onControlLoop { [self] in
                handshaking[id] = nil
                unauthenticated.remove(id)
                metrics.handshakeTook(took)
            }
        }
        link.onClose { [self] _ in
            session.onHandshakeProgress = nil
            let sockets = datagramSockets
            if sockets.indices.contains(link.loopIndex) { sockets[link.loopIndex].handler.remove(id) }
            onControlLoop { [self] in
                handshaking[id] = nil
                unauthenticated.remove(id)
            }
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
            onControlLoop { [self] in failedProof(from: source) }
        }
        return session
    }

    private static let droppedMessage = "too many unauthenticated connections"

    /// Forwards and SOCKS5 listeners that name a mediator without a secret: said at start and when a
    /// reload or the API adds them (the secret file is read at start only).
    func warnUnknownMediators(forwards: [ForwardSpec], socks: [SOCKSListenerSpec]) {
        for spec in forwards {
            if let warning = configuration.secrets.unknownMediatorWarning(spec.mediator, in: "forward \(spec.text)") {
                logger.warning("\(warning)")
            }
        }
        for spec in socks {
            if let warning = configuration.secrets.unknownMediatorWarning(spec.mediator, in: "\(spec)") { logger.warning("\(warning)") }
        }
    }

    /// Registers an established session with its loop's UDP socket and starts its datagram path; on
    /// the session's loop. Nothing bound (UDP channels off): its datagrams take its TCP channel.
    private func startDatagrams(of link: MediatorLink, id: UInt64) {
        let sockets = datagramSockets
        let index = link.loopIndex
        guard let info = link.info, link.isOpen, sockets.indices.contains(index) else { return }
        guard SessionLoops.loop(ofSession: id, loops: sockets.count) == index else {
            logger.error("session \(id) runs on loop \(index), which its id does not name; its datagrams take the TCP channel")
            return
        }
        let socket = sockets[index]
        socket.handler.add(id, link.datagramPath)
        link.datagramPath.start(sessionID: info.sessionID, keys: info.keys) { bytes, to in
            socket.writer.write(AddressedEnvelope(remoteAddress: to, data: bytes))
        }
    }

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
                            registry: self.registry, access: access, limits: limits, logger: self.logger, status: nil,
                            metrics: self.metrics, reload: { self.reload() },
                            changeForward: { op, spec in op == "add" ? self.addForward(spec) : self.removeForward(spec) },
                            captures: self.captures, findForward: { self.forwardToCapture(named: $0) },
                            changeSOCKS: { op, spec in op == "add" ? self.addSOCKS(spec) : self.removeSOCKS(spec) },
                            statusLater: { self.statusLater() }))
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
                    channel.pipeline.addHandler(
                        MetricsEndpoint(idleTimeout: limits.idleTimeout, renderLater: { self.statusLater().map { self.metrics.text($0) } }))
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

    /// What `status` shows of one connected mediator, read on its session's loop.
    struct LinkFacts {
        var from: String
        var connectedAt: Date
        var ports: Int
        var bytesIn: UInt64
        var bytesOut: UInt64
        var udpUp: Bool
        var udpSent: UInt64
        var udpReceived: UInt64
        var keepaliveRTT: TimeAmount?
        var udpKeepaliveRTT: TimeAmount?
        var tunPackets: [String: PacketCounters]?

        init(_ link: MediatorLink) {
            link.eventLoop.preconditionInEventLoop()
            let c = link.datagramPath.counters
            from = link.from
            connectedAt = link.connectedAt
            ports = link.ports.count
            bytesIn = link.payloadBytesIn
            bytesOut = link.payloadBytesOut
            udpUp = link.datagramPath.isUDPUp
            udpSent = c.sent
            udpReceived = c.received
            keepaliveRTT = link.session.keepaliveRoundTrip
            udpKeepaliveRTT = link.datagramPath.roundTrip
            // TUN mode keeps every session on the control loop (`LoopPinning`): this is that loop.
            if let relay = link.registry.tunMode?.tun(of: link)?.relay {
                var ends = ["server": relay.counters]
                if let stats = link.mediatorTunStats { ends["mediator"] = PacketCounters(stats) }
                tunPackets = ends
            }
        }
    }

    /// `status()`, with each connected mediator's figures read on its own loop first.
    func statusLater() -> EventLoopFuture<ServerStatus> {
        eventLoop.preconditionInEventLoop()
        let links = registry.openLinks
        let facts = links.map { link in
            link.eventLoop.inEventLoop ? link.eventLoop.makeSucceededFuture(LinkFacts(link)) : link.eventLoop.submit { LinkFacts(link) }
        }
        return EventLoopFuture.whenAllSucceed(facts, on: eventLoop).map { [self] all in
            status(facts: Dictionary(zip(links.map(\.name), all), uniquingKeysWith: { a, _ in a }))
        }
    }

    /// The server now: every mediator seen since start (connected or not) and every forward with
    /// its state and counters, with `facts` of the connected ones. Runs on the control loop.
    private func status(facts: [String: LinkFacts]) -> ServerStatus {
        eventLoop.preconditionInEventLoop()
        var mediators: [ServerStatus.Mediator] = []
        let iso = ISO8601DateFormatter()
        for (name, sessions) in registry.sessionsByName.sorted(by: { $0.key < $1.key }) {
            var m = ServerStatus.Mediator(
                name: name, connected: false, sessions: sessions, ports: 0, bytesIn: 0, bytesOut: 0, datagramPath: "tcp", udpSent: 0,
                udpReceived: 0)
            if let f = facts[name] {
                m.connected = true
                m.from = f.from
                m.connectedAt = iso.string(from: f.connectedAt)
                m.ports = f.ports
                m.bytesIn = f.bytesIn
                m.bytesOut = f.bytesOut
                m.datagramPath = f.udpUp ? "udp" : "tcp"
                m.udpSent = f.udpSent
                m.udpReceived = f.udpReceived
                m.keepaliveRTTSeconds = f.keepaliveRTT.map { Double($0.nanoseconds) / 1e9 }
                m.udpKeepaliveRTTSeconds = f.udpKeepaliveRTT.map { Double($0.nanoseconds) / 1e9 }
                m.tunPackets = f.tunPackets
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
