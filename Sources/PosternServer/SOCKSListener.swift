import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PosternCore
import PosternSOCKS
import PosternTunnel
import PosternWire

/// `--socks ADDR:PORT=NAME`: a SOCKS5 listener on the server. Each connection is a
/// `SOCKSConnection`; this class binds, counts the connections still in their handshake and closes
/// new ones past `SOCKSSettings.maxHandshakes`.
///
/// With `--threads` above 1 it listens with one socket per event loop and steers the kernel to the
/// one on the loop of its mediator's session (`SteeredListener`), as a `tcp:` forward does: a
/// connection's handshake, its request and its relay run on that loop. A connection accepted on
/// another loop (in the moment the session moved) finds its mediator not connected there. A listener
/// whose accounts may choose another mediator (`USER@NAME`) cannot know the loop before the
/// handshake: while one runs, the sessions stay on the control loop (`ServerService.socksPinning`).
/// What the loops share (the counts, the accounts) sits behind a lock taken once per connection.
final class SOCKSListener {
    let spec: SOCKSListenerSpec
    let registry: MediatorRegistry
    /// The control loop, where it is made, started, stopped and read for the status.
    let eventLoop: EventLoop
    /// The server's loops; it listens on each when there are several.
    private let loops: [EventLoop]
    let logger: Logger
    private var listener: SteeredListener?
    /// Where it listens (port 0 picks one); read on the control loop.
    var boundAddress: SocketAddress? { listener?.localAddress }

    private struct Shared {
        var settings: SOCKSSettings
        var handshaking = 0
        var turnedAway = 0
        var connectionsOpen = 0
        var connectionsTotal: UInt64 = 0
        /// Handshakes closed for stalling or for malformed input, by kind.
        var abandoned: [String: Int] = [:]
    }
    private let shared: NIOLockedValueBox<Shared>

    /// Replaced by a reload (`--socks-users` read again): connections accepted after it use the new
    /// accounts; those already past their handshake are not asked again.
    var settings: SOCKSSettings {
        get { shared.withLockedValue { $0.settings } }
        set { shared.withLockedValue { $0.settings = newValue } }
    }
    /// Connections between accept and their request (or their end).
    var handshaking: Int { shared.withLockedValue { $0.handshaking } }
    var turnedAway: Int { shared.withLockedValue { $0.turnedAway } }
    /// Accepted connections open now and since start (those closed at accept are `turnedAway`).
    var connectionsOpen: Int { shared.withLockedValue { $0.connectionsOpen } }
    var connectionsTotal: UInt64 { shared.withLockedValue { $0.connectionsTotal } }
    /// Listening now; false before the bind, and after `stop` (a reload removed it).
    private(set) var listening = false
    /// Why it is not listening, when it could not bind (restored after a refused reload).
    var failure: String?

    init(
        spec: SOCKSListenerSpec, settings: SOCKSSettings, registry: MediatorRegistry, eventLoop: EventLoop, loops: [EventLoop]? = nil,
        logger: Logger
    ) {
        self.spec = spec
        self.shared = NIOLockedValueBox(Shared(settings: settings))
        self.registry = registry
        self.eventLoop = eventLoop
        self.loops = loops ?? [eventLoop]
        self.logger = logger
    }

    func start() -> EventLoopFuture<Void> {
        SteeredListener.bind(to: SocketAddress(spec.listen), count: loops.count, on: eventLoop) { [self] i in
            ServerBootstrap(group: loops[i])
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(ChannelOptions.backlog, value: 1024)
                .relayedStreamChildOptions()
                .childChannelInitializer { [self] child in
                    do {
                        try child.setRelayedStreamOptions()
                    } catch {
                        return child.eventLoop.makeFailedFuture(error)
                    }
                    let admitted = shared.withLockedValue { s -> (Bool, Int, Int) in
                        guard s.handshaking < s.settings.maxHandshakes else {
                            s.turnedAway += 1
                            return (false, s.handshaking, s.turnedAway)
                        }
                        s.handshaking += 1
                        s.connectionsOpen += 1
                        s.connectionsTotal += 1
                        return (true, s.handshaking, s.turnedAway)
                    }
                    guard admitted.0 else {
                        if admitted.2.isWorthALogLine {
                            logger.warning(
                                "\(spec): \(admitted.1) connections are in their handshake; closing new ones (\(admitted.2) so far)")
                        }
                        return child.close()
                    }
                    child.closeFuture.whenComplete { [shared] _ in shared.withLockedValue { $0.connectionsOpen -= 1 } }
                    return child.pipeline.addHandler(SOCKSConnection(listener: self))
                }
        }
        .map { [self] listener in
            self.listener = listener
            listening = true
            // Its mediator may have attached while it was binding (or before it was added).
            if let link = registry.link(spec.mediator) { attach(link) }
            let auth = settings.users == nil ? "no authentication" : "username/password"
            logger.info("\(spec): listening on \(spec.listen) (\(auth))")
        }
    }

    /// Its mediator's session is established on `link`'s loop: new connections are accepted there.
    func attach(_ link: MediatorLink) {
        listener?.steer(toLoopOf: link.eventLoop, logger: logger, what: "\(spec)")
    }

    /// New connections are accepted onto loop `index` from now on.
    func steer(toLoop index: Int) {
        listener?.steer(to: index, logger: logger, what: "\(spec)")
    }

    /// Stops accepting; connections already accepted go on until they end (as a removed forward's do).
    func stop() {
        listening = false
        listener?.close()
    }

    /// A connection left its handshake (request received, or closed before).
    func handshakeEnded() { shared.withLockedValue { $0.handshaking -= 1 } }

    /// Handshakes closed for stalling or for malformed input, by kind. Each is logged at the 1st,
    /// 10th, 100th… time: a flood of idle or garbage connections must not flood the log.
    func handshakeAbandoned(_ kind: String, _ line: @autoclosure () -> String) {
        let n = shared.withLockedValue { s -> Int in
            let n = (s.abandoned[kind] ?? 0) + 1
            s.abandoned[kind] = n
            return n
        }
        if n.isWorthALogLine { logger.info("\(line()) (\(kind): \(n) so far)") }
    }
}
