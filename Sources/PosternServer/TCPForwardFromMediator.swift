import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// `tcp:NAME/ADDR:PORT=HOST:PORT`: whenever the mediator attaches, it opens and listens on its LAN
/// port; each connection it accepts is relayed to the target as seen from the server.
///
/// Its port and the server's connections to the target live on the loop of the mediator's session
/// (`--threads`): the outgoing connection is made there, so a relay never crosses threads. The
/// forward itself is the control loop's; what both sides touch (the listening port, whether it
/// stopped, the capture) sits behind a lock taken once per session or connection.
final class TCPForwardFromMediator: Forward {
    let spec: ForwardSpec
    let counters = ForwardCounters()
    private let registry: MediatorRegistry
    private var logger: Logger
    /// The control loop: the forward's own, and the recorders'.
    private let eventLoop: EventLoop
    /// `--pcap`: each connection the server makes to the target is recorded here too (set before
    /// `start`; only connections on the control loop record, the recorder being its own).
    var recorder: PcapRecorder?

    /// What the control loop and the session's loop share.
    private struct Shared {
        /// The mediator's listening port of the current session, closed by `stop`.
        var listeningOn: MediatorLink?
        var listenerID: UInt32?
        var stopped = false
        /// `ctl capture`: each connection made while it runs is recorded here too.
        var capture: PcapRecorder?
    }
    private let shared = NIOLockedValueBox(Shared())
    func startCapture(_ recorder: PcapRecorder) { shared.withLockedValue { $0.capture = recorder } }
    func stopCapture() { shared.withLockedValue { $0.capture = nil } }

    init(spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, logger: Logger) {
        self.spec = spec
        self.registry = registry
        self.eventLoop = eventLoop
        self.logger = logger
    }

    func start() -> EventLoopFuture<Void> { eventLoop.makeSucceededVoidFuture() }

    /// Its connections are made on the session's loop, whichever that is.
    var runsOnAnyLoop: Bool { true }

    func detach(_ link: MediatorLink) { counters.listening = false }

    /// Removed by a reload: its port on the mediator closes; connections already relayed go on.
    func stop() {
        counters.listening = false
        let (link, id) = shared.withLockedValue { s -> (MediatorLink?, UInt32?) in
            s.stopped = true
            defer { (s.listeningOn, s.listenerID) = (nil, nil) }
            return (s.listeningOn, s.listenerID)
        }
        guard let link, let id else { return }
        link.onLoop { if link.isOpen { link.close(portID: id).whenFailure { _ in } } }
    }

    private var stopped: Bool { shared.withLockedValue { $0.stopped } }

    /// Opens and listens on the session's loop (called from the control loop, it hops there).
    func attach(_ link: MediatorLink) {
        link.onLoop { [self] in attachOnLoop(link) }
    }

    private func attachOnLoop(_ link: MediatorLink) {
        let listen = spec.listenAddress
        link.open(.tcp, address: listen.address, port: listen.port, exact: true, owner: "forward \(spec)")
            .flatMap { [self] opened in
                shared.withLockedValue { s in (s.listeningOn, s.listenerID) = (link, opened.portID) }
                return link.listen(portID: opened.portID) { [self] accepted in
                    guard !stopped else { return }
                    self.accepted(accepted, link)
                }
            }
            .whenComplete { [self] result in
                switch result {
                case .success(let done):
                    guard !stopped else { return stop() }
                    counters.listening = link.isOpen
                    counters.failure = nil
                    logger.info("forward \(spec): mediator '\(spec.mediator)' listens on \(done.local)")
                    registry.events.post(
                        ServerEvent(mediator: spec.mediator, kind: "listening", port: done.portID, detail: "forward \(spec)"))
                case .failure(let error):
                    counters.listening = false
                    counters.failure = "mediator '\(spec.mediator)' cannot listen on \(spec.listen): \(error)"
                    logger.error("forward \(spec): mediator '\(spec.mediator)' cannot listen on \(spec.listen): \(error)")
                    registry.events.post(ServerEvent(mediator: spec.mediator, kind: "forward-failed", detail: "\(spec): \(error)"))
                }
            }
    }

    private func accepted(_ a: Frame.Accepted, _ link: MediatorLink) {
        link.eventLoop.assertInEventLoop()
        // Register at once so DATA that follows ACCEPTED is kept while we connect.
        let relay = link.makeRelay(portID: a.portID, counters: counters)
        // The recorders are the control loop's: a connection elsewhere (its session is on its way
        // there after `ctl capture`) is not recorded.
        let recorders =
            link.eventLoop === eventLoop ? [recorder, shared.withLockedValue { $0.capture }].compactMap { $0 } : []
        ClientBootstrap(group: link.eventLoop)
            .relayedStreamOptions()
            .connectTimeout(.seconds(10))
            .connect(host: spec.target.host.connectableString, port: Int(spec.target.port))
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    channel.eventLoop.assertInEventLoop()
                    // --pcap: the server's side of the reverse forward, as its socket to the target sees it.
                    for recorder in recorders {
                        if let tap = PcapStreamTap(channel: channel, recorder: recorder, initiatedHere: true) {
                            try? channel.pipeline.syncOperations.addHandler(tap, position: .first)
                        }
                    }
                    channel.pipeline.addHandler(relay).whenFailure { _ in channel.close(promise: nil) }
                case .failure(let error):
                    counters.failed(error)
                    logger.info("forward \(spec): cannot reach \(spec.target) for \(a.peer): \(error)")
                    var code = ErrorCode.refused
                    if let io = error as? IOError { code = ErrorCode(errno: io.errnoCode) }
                    relay.resetBoth(code: code, how: "connect to \(spec.target) failed")
                }
            }
    }
}

extension Host {
    /// The form NIO's resolver takes: IPv6 without brackets.
    var connectableString: String {
        switch self {
        case .ip(let a): return a.description
        case .name(let n): return n
        }
    }
}
