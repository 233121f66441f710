import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternReplay
import PosternTunnel
import PosternWire

/// `udp:ADDR:PORT=NAME/IP:PORT`: the server listens for datagrams; each remote peer gets its own UDP
/// port on the mediator (so replies find their way back), closed after a quiet spell. The flows are
/// a `DatagramFlowTable`, at most `limits.maxFlows` of them (`--udp-max-flows`): a sender spraying
/// from thousands of source ports cannot take every port of the mediator's `--max-ports` from the
/// other forwards. The datagrams travel the mediator session's `DatagramPath`.
///
/// With `--threads` above 1 it listens with one socket per event loop in one reuseport group
/// (`SteeredListener`), and steers the kernel to the socket on the loop of its mediator's session:
/// each datagram is read, its flow looked up and its reply written on that loop
/// (`UDPForwardToMediatorSocket`), next to the session, and never crosses threads. Datagrams that
/// reach a socket whose loop the session has just left are dropped (the mediator counts as not
/// connected there) until the kernel is steered to the new one.
final class UDPForwardToMediator: Forward {
    /// A mediator port opened for one flow, and how to close it.
    struct OpenedPort {
        var portID: UInt32
        var path: DatagramPath
        var close: () -> Void
    }

    /// Opens a UDP port on the mediator for a flow (the argument names its owner); nil when the
    /// mediator is not connected.
    typealias PortOpener = (_ owner: String) -> EventLoopFuture<OpenedPort>?

    let spec: ForwardSpec
    let counters: ForwardCounters
    private let eventLoop: EventLoop
    private let registry: MediatorRegistry
    /// The server's loops; the forward listens on each when there are several.
    private let loops: [EventLoop]
    private var logger: Logger
    /// Socket i of the listener is on `loops[i]` and feeds `sockets[i]`.
    let sockets: [UDPForwardToMediatorSocket]
    private var listener: SteeredListener?
    /// Where it listens (port 0 picks one); read on the control loop.
    var boundAddress: SocketAddress? { listener?.localAddress }

    /// `openPort` nil: ports are opened on the mediator's current session in `registry`, from the
    /// loop of that session only.
    init(
        spec: ForwardSpec, registry: MediatorRegistry, eventLoop: EventLoop, loops: [EventLoop]? = nil, limits: DatagramFlowLimits,
        now: @escaping () -> NIODeadline, logger: Logger, openPort: PortOpener? = nil
    ) throws {
        guard case .ip(let target) = spec.target.host else {
            throw ForwardSpec.ParseError(spec: spec.text, reason: "a udp target must be an IP address")
        }
        self.spec = spec
        self.eventLoop = eventLoop
        self.registry = registry
        self.loops = loops ?? [eventLoop]
        self.logger = logger
        let counters = ForwardCounters()
        self.counters = counters
        let openPort = openPort ?? Self.opener(spec: spec, target: target, registry: registry)
        self.sockets = self.loops.map { loop in
            UDPForwardToMediatorSocket(
                spec: spec, eventLoop: loop, counters: counters, limits: limits, now: now, logger: logger, openPort: openPort)
        }
        let sockets = sockets
        for socket in sockets { socket.events = registry.events }
        counters.openFlows = { sockets.reduce(0) { $0 + $1.openFlows } }
    }

    /// Each flow opens an ephemeral UDP port of the target's family on the mediator, when its
    /// session runs on the caller's loop.
    private static func opener(spec: ForwardSpec, target: IPAddress, registry: MediatorRegistry) -> PortOpener {
        { owner in
            registry.localLink(spec.mediator)?.openUDPPort(v6: target.isIPv6, owner: owner, reportDenied: true)
        }
    }

    /// `--pcap`: the forward's datagrams are recorded here too (set before `start`; `--pcap` keeps
    /// the sessions on the control loop, whose socket alone records: the recorder is that loop's).
    var recorder: PcapRecorder?

    /// `ctl capture`: a tap of its own on the forward's socket of the control loop, from now until
    /// `stopCapture` (the capture brings the mediator's session to that loop: `ServerService.pin`).
    func startCapture(_ recorder: PcapRecorder) {
        guard let channel = listener?.channels.first else { return }
        channel.pipeline.removeHandler(name: Self.captureTap).whenComplete { _ in
            channel.pipeline.addHandler(PcapDatagramTap(recorder: recorder), name: Self.captureTap, position: .first).whenFailure { _ in }
        }
    }

    func stopCapture() {
        listener?.channels.first?.pipeline.removeHandler(name: Self.captureTap).whenFailure { _ in }
    }

    private static let captureTap = "ctl-capture"

    func start() -> EventLoopFuture<Void> {
        SteeredListener.bind(to: SocketAddress(spec.listenAddress), count: loops.count, on: eventLoop) { [self] i in
            DatagramBootstrap(group: loops[i])
                .batchedDatagramOptions()
                .channelInitializer { [self] channel in
                    DatagramChecksumFilter.attach(to: channel).flatMapThrowing { [self] in
                        // --pcap: the tap sits before the forward, so it sees what the socket sees.
                        if i == 0, let recorder { try channel.pipeline.syncOperations.addHandler(PcapDatagramTap(recorder: recorder)) }
                        try channel.pipeline.syncOperations.addHandler(sockets[i])
                    }
                }
        }
        .map { [self] listener in
            self.listener = listener
            for socket in sockets { socket.eventLoop.execute { socket.start() } }
            // Its mediator may have attached while it was binding.
            if let link = registry.link(spec.mediator) { attach(link) }
            counters.listening = true
            logger.info("forward \(spec): listening on \(spec.listen)")
        }
    }

    /// Its flows live on the session's loop, whichever that is.
    var runsOnAnyLoop: Bool { true }

    func attach(_ link: MediatorLink) {
        listener?.steer(toLoopOf: link.eventLoop, logger: logger, what: "forward \(spec)")
    }

    /// Datagrams are read on loop `index` from now on.
    func steer(toLoop index: Int) {
        listener?.steer(to: index, logger: logger, what: "forward \(spec)")
    }

    func stop() {
        counters.listening = false
        for socket in sockets {
            if socket.eventLoop.inEventLoop { socket.stop() } else { socket.eventLoop.execute { socket.stop() } }
        }
        listener?.close()
    }
}
