import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// `tcp:NAME/ADDR:PORT=HOST:PORT`: whenever the mediator attaches, it opens and listens on its LAN
/// port; each connection it accepts is relayed to the target as seen from the server.
final class TCPForwardFromMediator: Forward {
    let spec: ForwardSpec
    let counters = ForwardCounters()
    private let registry: MediatorRegistry
    private var logger: Logger
    private let eventLoop: EventLoop
    /// `--pcap`: each connection the server makes to the target is recorded here too.
    var recorder: PcapRecorder?
    /// `ctl capture`: each connection made while it runs is recorded here too.
    private var capture: PcapRecorder?
    func startCapture(_ recorder: PcapRecorder) { capture = recorder }
    func stopCapture() { capture = nil }

    init(spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, logger: Logger) {
        self.spec = spec
        self.registry = registry
        self.eventLoop = eventLoop
        self.logger = logger
    }

    func start() -> EventLoopFuture<Void> { eventLoop.makeSucceededVoidFuture() }

    func detach(_ link: MediatorLink) { counters.listening = false }

    /// The mediator's listening port of the current session, closed by `stop`.
    private weak var listeningOn: MediatorLink?
    private var listenerID: UInt32?
    private var stopped = false

    /// Removed by a reload: its port on the mediator closes; connections already relayed go on.
    func stop() {
        stopped = true
        counters.listening = false
        if let link = listeningOn, let id = listenerID, link.isOpen { link.close(portID: id).whenFailure { _ in } }
        listeningOn = nil
        listenerID = nil
    }

    func attach(_ link: MediatorLink) {
        let listen = spec.listenAddress
        link.open(.tcp, address: listen.address, port: listen.port, exact: true, owner: "forward \(spec)")
            .flatMap { [self] opened in
                listeningOn = link
                listenerID = opened.portID
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
        // Register at once so DATA that follows ACCEPTED is kept while we connect.
        let relay = link.makeRelay(portID: a.portID, counters: counters)
        ClientBootstrap(group: eventLoop)
            .relayedStreamOptions()
            .connectTimeout(.seconds(10))
            .connect(host: spec.target.host.connectableString, port: Int(spec.target.port))
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    // --pcap: the server's side of the reverse forward, as its socket to the target sees it.
                    for recorder in [recorder, capture].compactMap({ $0 }) {
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
