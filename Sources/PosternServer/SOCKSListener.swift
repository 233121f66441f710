import Logging
import NIOCore
import NIOPosix
import PosternSOCKS
import PosternTunnel
import PosternWire

/// `--socks ADDR:PORT=NAME`: a SOCKS5 listener on the server. Each connection is a
/// `SOCKSConnection`; this class binds, counts the connections still in their handshake and closes
/// new ones past `SOCKSSettings.maxHandshakes`.
final class SOCKSListener {
    let spec: SOCKSListenerSpec
    /// Replaced by a reload (`--socks-users` read again): connections accepted after it use the new
    /// accounts; those already past their handshake are not asked again.
    var settings: SOCKSSettings
    let registry: MediatorRegistry
    let eventLoop: EventLoop
    var logger: Logger
    private var channel: Channel?
    /// Connections between accept and their request (or their end).
    private(set) var handshaking = 0
    private(set) var turnedAway = 0
    /// Accepted connections open now and since start (those closed at accept are `turnedAway`).
    private(set) var connectionsOpen = 0
    private(set) var connectionsTotal: UInt64 = 0
    /// Listening now; false before the bind, and after `stop` (a reload removed it).
    private(set) var listening = false
    /// Why it is not listening, when it could not bind (restored after a refused reload).
    var failure: String?

    init(spec: SOCKSListenerSpec, settings: SOCKSSettings, registry: MediatorRegistry, eventLoop: EventLoop, logger: Logger) {
        self.spec = spec
        self.settings = settings
        self.registry = registry
        self.eventLoop = eventLoop
        self.logger = logger
    }

    func start() -> EventLoopFuture<Void> {
        ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .relayedStreamChildOptions()
            .childChannelInitializer { [self] child in
                do {
                    try child.setRelayedStreamOptions()
                } catch {
                    return child.eventLoop.makeFailedFuture(error)
                }
                guard handshaking < settings.maxHandshakes else {
                    turnedAway += 1
                    if turnedAway.isWorthALogLine {
                        logger.warning(
                            "\(spec): \(handshaking) connections are in their handshake; closing new ones (\(turnedAway) so far)")
                    }
                    return child.close()
                }
                handshaking += 1
                connectionsOpen += 1
                connectionsTotal += 1
                child.closeFuture.whenComplete { _ in self.connectionsOpen -= 1 }
                return child.pipeline.addHandler(SOCKSConnection(listener: self))
            }
            .bind(to: SocketAddress(spec.listen))
            .map { [self] channel in
                self.channel = channel
                listening = true
                let auth = settings.users == nil ? "no authentication" : "username/password"
                logger.info("\(spec): listening on \(spec.listen) (\(auth))")
            }
    }

    /// Stops accepting; connections already accepted go on until they end (as a removed forward's do).
    func stop() {
        listening = false
        channel?.close(promise: nil)
    }

    /// A connection left its handshake (request received, or closed before).
    func handshakeEnded() { handshaking -= 1 }

    /// Handshakes closed for stalling or for malformed input, by kind. Each is logged at the 1st,
    /// 10th, 100th… time: a flood of idle or garbage connections must not flood the log.
    private var abandoned: [String: Int] = [:]

    func handshakeAbandoned(_ kind: String, _ line: @autoclosure () -> String) {
        let n = (abandoned[kind] ?? 0) + 1
        abandoned[kind] = n
        if n.isWorthALogLine { logger.info("\(line()) (\(kind): \(n) so far)") }
    }
}

extension Int {
    /// 1, 10, 100…: when a repeated event is logged, so a flood does not flood the log.
    var isWorthALogLine: Bool {
        var n = self
        while n >= 10, n % 10 == 0 { n /= 10 }
        return n == 1
    }
}
