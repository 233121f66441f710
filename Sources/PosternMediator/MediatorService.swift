import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternNetlink
import PosternPcap
import PosternTunnel
import PosternWire

/// `postern mediator`: keeps one tunnel to the server alive — dial, hello, serve requests, and on any
/// loss dial again with fast first retries then capped, jittered backoff (DESIGN.md, "The tunnel").
public final class MediatorService: @unchecked Sendable {
    // All mutable state is touched on `eventLoop` only.
    private let configuration: MediatorConfiguration
    private let group: MultiThreadedEventLoopGroup
    private let eventLoop: EventLoop
    private var logger: Logger
    private var backoff = Backoff()
    private var session: TunnelSession?
    /// `--pcap`: where the LAN sockets' traffic is recorded.
    private var recorder: PcapRecorder?
    private var stopping = false
    private let finished: EventLoopPromise<Void>
    /// TUN mode (`--tun`): one per mediator, reused by each session.
    private let tun: MediatorTun?
    /// How long after offering TUN mode a server's request is waited for before saying it has none.
    static let tunRequestWait = TimeAmount.seconds(5)
    /// ICMP echo (`ctl ping`/`ctl traceroute`): the socket kind this host allows, found at start.
    private let icmpEcho = ICMPEcho()

    public init(configuration: MediatorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        // One event loop: the tunnel and every relayed socket share it, so no state crosses threads.
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.eventLoop = group.next()
        self.finished = eventLoop.makePromise()
        self.tun = configuration.tun.map { MediatorTun(settings: $0, mediatorName: configuration.name, logger: logger) }
    }

    /// Runs until `stop()`, or until a server that proved the secret refuses this mediator for good
    /// (`ReconnectRule`): that ends it with an error. Nothing unauthenticated can end it.
    public func run() async throws {
        // --pcap: opened before the first dial, so a path that cannot be written stops the mediator.
        try await eventLoop.submit { [self] in
            recorder = try configuration.pcap.map { try PcapRecorder(path: $0.path, maxBytes: $0.maxBytes, maxFiles: $0.maxFiles) }
            tun?.recorder = recorder
        }.get()
        logger.info("ICMP echo: \(icmpEcho.mode)")
        if configuration.tun?.lanPresence == .raw {
            if icmpEcho.process.map({ !$0.hasNetRaw }) == true {
                logger.warning("TUN mode with --lan-presence raw needs CAP_NET_RAW, which this process lacks")
            }
        } else if configuration.tun != nil && icmpEcho.process.map({ !$0.hasNetAdmin }) == true {
            logger.warning("TUN mode (--tun) needs CAP_NET_ADMIN, which this process lacks")
        }
        eventLoop.execute {
            // Undo what a killed run left (its journal in the state directory) before anything else.
            self.tun?.cleanLeftovers()
            self.dial()
        }
        do {
            try await finished.futureResult.get()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    public func stop() {
        eventLoop.execute { [self] in
            guard !stopping else { return }
            stopping = true
            // Undo TUN mode's changes now: the process may exit before the session's close arrives.
            // A start under way undoes them when it is done: finish only after that.
            let tunStopped = tun?.stop()
            if let session {
                session.goAway(.shuttingDown, "mediator stopping")
            }
            if let tunStopped {
                tunStopped.whenComplete { _ in self.finished.succeed(()) }
            } else {
                finished.succeed(())
            }
        }
    }

    public struct Refused: Error, CustomStringConvertible {
        public var end: SessionEnd
        public var description: String {
            end.byPeer ? "the server refused this mediator: \(end.message) (\(end.code))" : "stopped: \(end.message)"
        }
    }

    private func dial() {
        guard !stopping else { return }
        let configuration = configuration
        // The one place the mediator's port rules meet the real clock.
        let api = RemoteSocketAPI(configuration: configuration, eventLoop: eventLoop, logger: logger, now: { .now() })
        api.recorder = recorder
        let session = TunnelSession(
            machine: MediatorSessionStateMachine(
                name: configuration.name, secret: configuration.secret, nonce: Nonce.make(),
                softwareVersion: configuration.softwareVersion, settings: configuration.settings),
            settings: configuration.settings, eventLoop: eventLoop, logger: logger, now: { .now() })
        session.delegate = api
        let path = UDPChannelDatagramPath(
            role: .mediator, fallback: TunnelDatagramPath(session: session), settings: configuration.udpChannel, eventLoop: eventLoop,
            logger: logger, now: { .now() })
        api.datagramPath = path
        api.tun = tun
        api.icmpEcho = icmpEcho
        var udpSocket: Channel?
        // Set once the server's WELCOME proof checked out over the key TLS verified.
        var serverProved = false
        api.onEstablished = { [self] session, info in
            serverProved = true
            logger.info(
                "connected to \(configuration.serverHost):\(configuration.serverPort) as '\(info.name)' (session \(info.sessionID))")
            sendEnvironment(session)
            if let tun {
                // A server without --tun never asks: say so, or the operator sees no "TUN mode up"
                // and no reason.
                let before = tun.requests
                eventLoop.scheduleTask(in: Self.tunRequestWait) { [logger, weak session] in
                    guard let session, session.isOpen, tun.requests == before else { return }
                    logger.notice(
                        "TUN mode (--tun) was offered to the server \(Self.tunRequestWait.nanoseconds / 1_000_000_000) s ago and it has not asked for it: a server started without --tun keeps this mediator in stream mode"
                    )
                }
            }
            if configuration.udpChannelEnabled {
                openUDPChannel(path, session: session, info: info) { udpSocket = $0 }
            }
        }
        api.onClosed = { [self] end in
            path.close()
            udpSocket?.close(promise: nil)
            udpSocket = nil
            self.session = nil
            lost(end, serverProved: serverProved)
        }
        ClientBootstrap(group: eventLoop)
            // Short: while a path is dead, SYNs are lost; a fresh attempt after the backoff delay
            // notices a healed path sooner than the kernel's slowing SYN retransmissions would.
            .connectTimeout(.seconds(4))
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 512 * 1024, high: 2 * 1024 * 1024))
            .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.tunnelAllocator)
            .channelInitializer { channel in
                do {
                    let transport = try configuration.transport.clientConnection(
                        serverHost: configuration.serverHost, serverPort: configuration.serverPort)
                    session.transport = transport
                    return channel.pipeline.addHandlers(
                        transport.handlers + [
                            FrameDecoderHandler(maxPayload: configuration.settings.maxPayload),
                            session,
                        ])
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .connect(host: configuration.serverHost, port: configuration.serverPort)
            .whenComplete { [self] result in
                switch result {
                case .success:
                    self.session = session
                case .failure(let error):
                    logger.warning(
                        "cannot reach server \(configuration.serverHost):\(configuration.serverPort): \(Self.connectFailureText(error))")
                    retry()
                }
            }
    }

    /// Why the server could not be reached, in strerror(3)'s words ("Connection refused") rather than
    /// NIO's nested description (`Connection errors: SingleConnectionFailure(target: [IPv4]…,
    /// error: connection reset (error set): Connection refused) (errno: 111))`): the line an operator
    /// sees most while the server is down.
    static func connectFailureText(_ error: Error) -> String {
        if error is NIOConnectionError || error is IOError { return RemoteSocketAPI.describe(error).2 }
        return "\(error)"
    }

    private func lost(_ end: SessionEnd, serverProved: Bool) {
        guard !stopping else { return }
        switch ReconnectRule.decide(end, serverProved: serverProved) {
        case .stop:
            // The server proved it knows the secret and refused us: retrying cannot help.
            logger.error("refused by the server: \(end.message) (\(end.code))")
            stopping = true
            finished.fail(Refused(end: end))
        case .retry(let resetBackoff, let loud):
            if resetBackoff { backoff.reset() }
            if loud {
                // Anyone on the path could have sent this (before the server's proof), so it cannot
                // stop the mediator; but it needs attention: a wrong pin, secret or name, or an attack.
                let who = serverProved ? "the server" : "the server (or someone on the path: not authenticated yet)"
                logger.error("\(end.byPeer ? "refused by \(who)" : "cannot connect"): \(end.message) (\(end.code)); retrying")
            } else {
                logger.warning("tunnel lost: \(end)")
            }
            retry()
        }
    }

    private func retry() {
        guard !stopping else { return }
        let delay = backoff.nextDelay(unit: Double.random(in: 0..<1))
        logger.info("reconnecting in \(delay.nanoseconds / 1_000_000) ms")
        eventLoop.scheduleTask(in: delay) { [self] in dial() }
    }

    /// Opens channel 1 of the session's UDP channel (docs/protocol.md §9): a UDP socket connected to
    /// the address the TCP channel reached, same port number. If it cannot be had, datagrams stay on
    /// the TCP channel.
    private func openUDPChannel(
        _ path: UDPChannelDatagramPath, session: TunnelSession, info: EstablishedSession, opened: @escaping (Channel) -> Void
    ) {
        guard let server = session.remoteAddress else { return }
        DatagramBootstrap(group: eventLoop)
            .batchedDatagramOptions(receiveOffload: true)
            .channelInitializer { channel in
                DatagramChecksumFilter.attach(to: channel).flatMap { channel.pipeline.addHandler(MediatorDatagramHandler(path: path)) }
            }
            .connect(to: server)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard session.isOpen else {
                        channel.close(promise: nil)
                        return
                    }
                    opened(channel)
                    let to = channel.remoteAddress ?? server
                    let writer = DatagramWriteBatcher(channel: channel, segmentation: RelayBuffers.channelSegmentation)
                    path.start(sessionID: info.sessionID, keys: info.keys) { bytes, address in
                        writer.write(AddressedEnvelope(remoteAddress: address, data: bytes))
                    }
                    path.openChannel(1, to: to)
                    logger.info("UDP channel 1 to \(to.display)/udp opened")
                case .failure(let error):
                    logger.warning("cannot open a UDP channel to \(server.display): \(error); datagrams take the TCP channel")
                }
            }
    }

    private func sendEnvironment(_ session: TunnelSession) {
        let version = configuration.softwareVersion
        // Netlink dumps block for a few milliseconds: keep them off the event loop.
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
            try NetlinkEnvironment.read(softwareVersion: version)
        }.whenComplete { [self] result in
            var offered: MediatorEnvironment.Capabilities = icmpEcho.capabilities
            if tun != nil { offered.formUnion([.tunOffered, .tunExtensions]) }
            if configuration.pipelinedConnects { offered.insert(.pipelinedConnect) }
            offered.insert(.deniedReports)
            switch result {
            case .success(var environment):
                environment.capabilities.formUnion(offered)
                session.send(.environment(environment))
            case .failure(let error):
                logger.warning("cannot read the network environment: \(error)")
                session.send(.environment(.init(hostname: "", softwareVersion: version, capabilities: offered)))
            }
        }
    }
}
