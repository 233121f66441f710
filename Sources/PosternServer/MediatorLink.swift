import Atomics
import Foundation
import Logging
import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// The server's handle on one connected mediator: sends requests and matches their answers, hands
/// ACCEPTED to whoever listens, keeps the mediator's environment and a table of its ports.
/// Lives on its session's event loop (`eventLoop`): with `--threads` above 1 that is one of several,
/// and the registry, admin API and forwards on the control loop reach it by hopping there
/// (docs/architecture.md, "Threads"). Only `eventLoop`, `info` (set once, before the registry
/// hears of the link), `name`, `from`, `connectedAt` and `isOpen` may be read from another loop.
public final class MediatorLink: TunnelSessionDelegate {
    public let session: TunnelSession
    /// The session's loop: every method below runs on it.
    public let eventLoop: EventLoop
    /// Which of the server's loops `eventLoop` is (0: the control loop), for the admin API.
    var loopIndex = 0
    /// Established and not yet closed, for readers on other loops.
    private let attached = ManagedAtomic<Bool>(false)
    let registry: MediatorRegistry
    public private(set) var info: EstablishedSession?
    public private(set) var environment: MediatorEnvironment?
    public let connectedAt: Date
    /// How this session's datagrams travel: a UDP channel while one is up, else the TCP channel.
    /// Every UDP forward sends and receives through it.
    public let datagramPath: UDPChannelDatagramPath
    /// What the session's ports carried, both channels: DATA and DATAGRAM payload on the TCP channel,
    /// datagram payload on the UDP channel (sealed bytes, forged or replayed datagrams not counted).
    public var payloadBytesIn: UInt64 { session.bytesIn &+ datagramPath.payloadBytesIn }
    public var payloadBytesOut: UInt64 { session.bytesOut &+ datagramPath.payloadBytesOut }
    private var nextRequestID: UInt32 = 1
    /// The next server-chosen port id for a pipelined CONNECT (docs/protocol.md §5.3); nil once the
    /// range is used up (CONNECTs then go the old way, with port id 0).
    private var nextServerPortID: UInt32? = PortIDRange.firstServerID
    private var pending: [UInt32: EventLoopPromise<Frame.Done>] = [:]
    /// Who takes the connections a listening port accepts.
    private var listeners: [UInt32: (Frame.Accepted) -> Void] = [:]
    public private(set) var ports: [UInt32: PortRecord] = [:]
    private var closeHandlers: [(SessionEnd) -> Void] = []
    private var establishedHandlers: [() -> Void] = []
    private var environmentHandlers: [(MediatorEnvironment) -> Void] = []
    /// TUN requests waiting for TUN_READY (or FAILED).
    private var pendingTun: [UInt32: EventLoopPromise<Frame.TunReady>] = [:]
    /// ECHO requests waiting for ECHO_REPLY (or FAILED), at most `maxPendingEchoes`.
    private var pendingEcho: [UInt32: EventLoopPromise<Frame.EchoReply>] = [:]
    /// ECHOs this link keeps waiting at most; the mediator bounds its own side too (docs/protocol.md §11.2).
    static let maxPendingEchoes = 64
    /// Who takes PACKET frames (TUN mode); nil: they are dropped and counted.
    var packetReceiver: ((ByteBuffer) -> Void)?
    /// PACKET frames that arrived while TUN mode was not up here.
    public private(set) var strayPackets: UInt64 = 0
    /// The mediator's end of TUN mode as its last TUN_STATS said (docs/protocol.md §10.5).
    public private(set) var mediatorTunStats: Frame.TunStats?
    /// Whether a TUN with the stats flag went out: TUN_STATS before that is a protocol error.
    private var askedForTunStats = false
    /// Receivers of ports that have no other owner (UDP ports opened through the admin API), held
    /// here while their port lives: the datagram path holds receivers weakly.
    private var heldReceivers: [UInt32: DatagramPathReceiver] = [:]
    /// Ports this link keeps at most (a mediator cannot make the server hold more).
    var maxPorts = 4096
    /// Admission control for CONNECTs (`ServerConfiguration.connectAdmission`).
    public internal(set) var admission = ConnectAdmission()
    private var queuedConnects: [ConnectAdmission.Ticket: QueuedConnect] = [:]
    private var admissionTimer: Scheduled<Void>?
    /// CONNECTs whose user was reset before the mediator saw them, or after it refused them for
    /// limits too often: each one logged with its reason (at 1, 10, 100…).
    public private(set) var connectRefusals = 0
    /// ACCEPTED frames for a port that is not listening here, reset and forgotten.
    public private(set) var strayAccepted = 0

    public struct PortRecord: Codable, Sendable {
        public var id: UInt32
        public var transport: String
        public var kind: String
        public var local: String
        public var remote: String?
        public var owner: String
    }

    init(session: TunnelSession, registry: MediatorRegistry, connectedAt: Date, udpChannel: UDPChannelSettings = .init()) {
        self.session = session
        self.eventLoop = session.eventLoop
        self.registry = registry
        self.connectedAt = connectedAt
        self.datagramPath = UDPChannelDatagramPath(
            role: .server, fallback: TunnelDatagramPath(session: session), settings: udpChannel, eventLoop: session.eventLoop,
            logger: session.logger, now: { .now() })
    }

    public var name: String { info?.name ?? "?" }
    public var isOpen: Bool {
        eventLoop.inEventLoop ? session.isOpen && info != nil : attached.load(ordering: .relaxed)
    }

    /// Runs `f` on this link's loop: at once when already there (one loop: today's path).
    func onLoop(_ f: @escaping () -> Void) {
        if eventLoop.inEventLoop { f() } else { eventLoop.execute(f) }
    }
    /// Where the mediator connects from, for the log.
    var from: String { session.remoteAddress?.display ?? "?" }

    // MARK: - Requests (docs/protocol.md §5)

    private func request(_ make: (UInt32) -> Frame) -> EventLoopFuture<Frame.Done> {
        eventLoop.preconditionInEventLoop()
        let promise = session.eventLoop.makePromise(of: Frame.Done.self)
        guard isOpen else {
            promise.fail(OperationError(code: .shuttingDown, message: "mediator '\(name)' is not connected"))
            return promise.futureResult
        }
        let id = nextRequestID
        nextRequestID &+= 1
        if nextRequestID == 0 { nextRequestID = 1 }
        pending[id] = promise
        session.send(make(id))
        return promise.futureResult
    }

    /// `reportDenied`: a UDP port whose datagrams the mediator's policy drops is reported with DENIED
    /// (§6.5), if the mediator announced it can (an older one gets the original OPEN).
    public func open(
        _ transport: Frame.Transport, address: IPAddress, port: UInt16, exact: Bool, owner: String, reportDenied: Bool = false
    ) -> EventLoopFuture<Frame.Done> {
        let flags: Frame.Open.Flags? =
            reportDenied && environment?.capabilities.contains(.deniedReports) == true ? .reportDenied : nil
        return request { .open(.init(requestID: $0, transport: transport, exact: exact, address: address, port: port, flags: flags)) }
            .map { [self] done in
                ports[done.portID] = PortRecord(
                    id: done.portID, transport: "\(transport)", kind: "open", local: "\(done.local)", remote: nil, owner: owner)
                return done
            }
    }

    public func redirect(address: IPAddress, port: UInt16, exact: Bool, owner: String) -> EventLoopFuture<Frame.Done> {
        request { .redirect(.init(requestID: $0, exact: exact, address: address, port: port)) }
            .map { [self] done in
                ports[done.portID] = PortRecord(
                    id: done.portID, transport: "udp", kind: "redirected", local: "\(done.local)", remote: nil, owner: owner)
                return done
            }
    }

    /// Whether CONNECT may name a server-chosen port id, the user's bytes right behind it (§5.3): the
    /// mediator announced it in its ENVIRONMENT. Until that arrives, and with an older mediator, no.
    public var pipelinesConnects: Bool {
        nextServerPortID != nil && environment?.capabilities.contains(.pipelinedConnect) == true
    }

    /// What a pipelined CONNECT's owner is told besides the answer: the id it was sent under (from
    /// then on the owner's relay may send DATA for it), and that it went back to the admission queue
    /// after a refusal for limits (the relay pauses until the next `sent`, under a new id).
    public struct PipelinedConnect {
        public var sent: (UInt32) -> Void
        public var requeued: () -> Void
        public init(sent: @escaping (UInt32) -> Void, requeued: @escaping () -> Void) {
            self.sent = sent
            self.requeued = requeued
        }
    }

    /// portID 0: open an ephemeral port and connect in one round trip. Goes through `admission`: sent
    /// at once while the mediator has room, else queued (bound, timeout) until an answer frees a slot.
    /// `isWanted` is asked when a queued CONNECT's turn comes: false (its user left) and it is dropped.
    /// `pipelined` (with port id 0): when the mediator takes it, the CONNECT names a new server-chosen
    /// id instead, and `pipelined.sent` is told that id as it goes out; otherwise it is never called.
    public func connect(
        portID: UInt32, to destination: Endpoint, owner: String, isWanted: (() -> Bool)? = nil, pipelined: PipelinedConnect? = nil
    ) -> EventLoopFuture<Frame.Done> {
        eventLoop.preconditionInEventLoop()
        let promise = session.eventLoop.makePromise(of: Frame.Done.self)
        guard isOpen else {
            promise.fail(OperationError(code: .shuttingDown, message: "mediator '\(name)' is not connected"))
            return promise.futureResult
        }
        let queued = QueuedConnect(
            portID: portID, destination: destination, owner: owner, isWanted: isWanted, pipelined: portID == 0 ? pipelined : nil,
            promise: promise)
        let (ticket, decision) = admission.request(now: .now())
        switch decision {
        case .send:
            sendConnect(ticket, queued)
        case .queued:
            queuedConnects[ticket] = queued
            armAdmissionTimer()
        case .refused(let why):
            refuseConnect(queued, why)
        }
        return promise.futureResult
    }

    private struct QueuedConnect {
        var portID: UInt32
        var destination: Endpoint
        var owner: String
        var isWanted: (() -> Bool)?
        var pipelined: PipelinedConnect?
        var promise: EventLoopPromise<Frame.Done>
    }

    /// A new server-chosen port id, when this CONNECT may be pipelined.
    private func takeServerPortID(for c: QueuedConnect) -> UInt32? {
        guard c.pipelined != nil, pipelinesConnects, let id = nextServerPortID else { return nil }
        nextServerPortID = id == UInt32.max ? nil : id + 1
        return id
    }

    private func sendConnect(_ ticket: ConnectAdmission.Ticket, _ c: QueuedConnect) {
        let serverPortID = takeServerPortID(for: c)
        let answer = request { .connect(.init(requestID: $0, portID: serverPortID ?? c.portID, destination: c.destination)) }
        // The CONNECT is on its way: the owner's relay may send right behind it, before DONE.
        if let serverPortID, isOpen { c.pipelined?.sent(serverPortID) }
        answer
            .whenComplete { [self] result in
                let step: ConnectAdmission.Step
                switch result {
                case .success(var done):
                    if let serverPortID, done.portID != serverPortID {
                        // The port is the one the CONNECT named; a mediator saying otherwise is broken.
                        session.goAway(.protocolError, "DONE names port \(done.portID) for a CONNECT of port \(serverPortID)")
                        done.portID = serverPortID
                    }
                    // A pipelined port whose relay already ended (its user reset it) is not recorded.
                    if serverPortID == nil || session.port(done.portID) != nil {
                        ports[done.portID] = PortRecord(
                            id: done.portID, transport: "tcp", kind: "connected", local: "\(done.local)", remote: "\(c.destination)",
                            owner: c.owner)
                    }
                    step = admission.finished(ticket, .done, now: .now())
                    c.promise.succeed(done)
                case .failure(let error):
                    let forLimits = (error as? OperationError)?.code == .limitExceeded
                    step = admission.finished(ticket, forLimits ? .refusedForLimits : .failed, now: .now())
                    if step.requeued {
                        // A pipelined one goes again under a new id, with the bytes its relay sent.
                        if serverPortID != nil { c.pipelined?.requeued() }
                        queuedConnects[ticket] = c
                        armAdmissionTimer()
                    } else if let why = step.refused {
                        refuseConnect(c, why, mediatorSaid: error)
                    } else {
                        c.promise.fail(error)
                    }
                }
                for next in step.send { dequeued(next) }
            }
    }

    /// A queued CONNECT's turn came.
    private func dequeued(_ ticket: ConnectAdmission.Ticket) {
        guard let c = queuedConnects.removeValue(forKey: ticket) else { return }
        if let isWanted = c.isWanted, !isWanted() {
            // Its user is gone: the slot goes to the next one instead.
            let step = admission.finished(ticket, .failed, now: .now())
            c.promise.fail(OperationError(code: .connectionReset, message: "the connection closed while its connect waited"))
            for next in step.send { dequeued(next) }
            return
        }
        sendConnect(ticket, c)
    }

    /// The last resort: the user's connection is reset, with the reason in the log and a count.
    private func refuseConnect(_ c: QueuedConnect, _ why: ConnectAdmission.Refusal, mediatorSaid: Error? = nil) {
        connectRefusals &+= 1
        let code: ErrorCode
        switch why {
        case .timedOut: code = .timedOut
        case .sessionLost: code = .shuttingDown
        case .queueFull, .retriesExhausted: code = .limitExceeded
        }
        let said = mediatorSaid.map { " (mediator: \($0))" } ?? ""
        // Logged at 1, 10, 100…: a flood of refusals must not flood the log too.
        if connectRefusals.isPowerOf10 {
            session.logger.warning(
                "mediator '\(name)': connect to \(c.destination) for \(c.owner) refused: \(why)\(said) (\(connectRefusals) so far)")
        }
        c.promise.fail(OperationError(code: code, message: "\(why)"))
    }

    private func armAdmissionTimer() {
        guard admissionTimer == nil, let at = admission.nextDeadline else { return }
        admissionTimer = session.eventLoop.scheduleTask(deadline: at) { [weak self] in
            guard let self else { return }
            admissionTimer = nil
            for t in admission.expire(now: .now()) {
                if let c = queuedConnects.removeValue(forKey: t) {
                    refuseConnect(c, .timedOut(after: admission.settings.queueTimeout))
                }
            }
            armAdmissionTimer()
        }
    }

    public func listen(portID: UInt32, backlog: UInt16 = 128, onAccepted: @escaping (Frame.Accepted) -> Void) -> EventLoopFuture<Frame.Done>
    {
        request { .listen(.init(requestID: $0, portID: portID, backlog: backlog)) }
            .map { [self] done in
                listeners[done.portID] = onAccepted
                ports[done.portID]?.kind = "listening"
                return done
            }
    }

    public func close(portID: UInt32) -> EventLoopFuture<Frame.Done> {
        request { .close(.init(requestID: $0, portID: portID)) }
            .always { [self] _ in
                listeners[portID] = nil
                ports[portID] = nil
                if heldReceivers.removeValue(forKey: portID) != nil { datagramPath.detach(portID: portID) }
                session.unregister(portID)
            }
    }

    /// Delivers the datagrams of `portID`, from either path, to `receiver`, held until the port closes
    /// or the session ends.
    func hold(portID: UInt32, _ receiver: DatagramPathReceiver) {
        heldReceivers[portID] = receiver
        datagramPath.attach(portID: portID, receiver)
    }

    /// Asks the mediator for TUN mode (docs/protocol.md §10); only for a mediator that offered it.
    func requestTun(mtu: UInt16, flags: Frame.Tun.Flags? = nil) -> EventLoopFuture<Frame.TunReady> {
        eventLoop.preconditionInEventLoop()
        let promise = session.eventLoop.makePromise(of: Frame.TunReady.self)
        guard isOpen else {
            promise.fail(OperationError(code: .shuttingDown, message: "mediator '\(name)' is not connected"))
            return promise.futureResult
        }
        let id = nextRequestID
        nextRequestID &+= 1
        if nextRequestID == 0 { nextRequestID = 1 }
        pendingTun[id] = promise
        if flags?.contains(.stats) == true { askedForTunStats = true }
        session.send(.tun(.init(requestID: id, mtu: mtu, flags: flags)))
        return promise.futureResult
    }

    /// Asks the mediator to send one ICMP echo request (docs/protocol.md §11); only to a mediator that
    /// offered ECHO in its ENVIRONMENT.
    public func echo(to destination: IPAddress, ttl: UInt8, sequence: UInt16, size: UInt16, timeoutMillis: UInt32)
        -> EventLoopFuture<Frame.EchoReply>
    {
        echo(to: .ip(destination), ttl: ttl, sequence: sequence, size: size, timeoutMillis: timeoutMillis)
    }

    /// As above, to an address or a name the mediator resolves in its LAN to the first address of
    /// `family`: a name only to a mediator that offers `echoNames`, else FAILED-like `notSupported`.
    public func echo(
        to host: PosternWire.Host, family: Frame.Echo.Family = .any, ttl: UInt8, sequence: UInt16, size: UInt16, timeoutMillis: UInt32
    ) -> EventLoopFuture<Frame.EchoReply> {
        eventLoop.preconditionInEventLoop()
        let promise = session.eventLoop.makePromise(of: Frame.EchoReply.self)
        guard isOpen else {
            promise.fail(OperationError(code: .shuttingDown, message: "mediator '\(name)' is not connected"))
            return promise.futureResult
        }
        guard let environment, environment.capabilities.contains(.echoOffered) else {
            promise.fail(
                OperationError(
                    code: .notSupported,
                    message: "mediator '\(name)' does not offer ICMP echo (an older version, or its environment has not arrived yet)"))
            return promise.futureResult
        }
        if case .name = host, !environment.capabilities.contains(.echoNames) {
            promise.fail(
                OperationError(
                    code: .notSupported,
                    message: "mediator '\(name)' cannot resolve names for ICMP echo (an older version): give an IP address"))
            return promise.futureResult
        }
        guard pendingEcho.count < Self.maxPendingEchoes else {
            promise.fail(
                OperationError(
                    code: .limitExceeded, message: "\(Self.maxPendingEchoes) ICMP echo requests to '\(name)' are already waiting"))
            return promise.futureResult
        }
        let id = nextRequestID
        nextRequestID &+= 1
        if nextRequestID == 0 { nextRequestID = 1 }
        pendingEcho[id] = promise
        session.send(
            .echo(
                .init(
                    requestID: id, host: host, family: family, ttl: ttl, sequence: sequence, size: size, timeoutMillis: timeoutMillis)))
        return promise.futureResult
    }

    /// Runs `f` with each ENVIRONMENT the mediator sends.
    func onEnvironment(_ f: @escaping (MediatorEnvironment) -> Void) {
        environmentHandlers.append(f)
    }

    public func forget(portID: UInt32) {
        ports[portID] = nil
    }

    public func record(_ r: PortRecord) { ports[r.id] = r }

    public func onClose(_ f: @escaping (SessionEnd) -> Void) {
        eventLoop.preconditionInEventLoop()
        closeHandlers.append(f)
    }

    public func onEstablished(_ f: @escaping () -> Void) {
        establishedHandlers.append(f)
    }

    // MARK: - TunnelSessionDelegate

    public func sessionEstablished(_ session: TunnelSession, _ info: EstablishedSession) {
        eventLoop.assertInEventLoop()
        self.info = info
        attached.store(true, ordering: .relaxed)
        let handlers = establishedHandlers
        establishedHandlers.removeAll()
        for h in handlers { h() }
        registry.onControlLoop { [self] in registry.attach(self) }
    }

    public func session(_ session: TunnelSession, received frame: Frame) {
        switch frame {
        case .done(let d):
            pending.removeValue(forKey: d.requestID)?.succeed(d)
        case .failed(let f):
            pending.removeValue(forKey: f.requestID)?.fail(OperationError(f))
            pendingTun.removeValue(forKey: f.requestID)?.fail(OperationError(f))
            pendingEcho.removeValue(forKey: f.requestID)?.fail(OperationError(f))
        case .echoReply(let r):
            pendingEcho.removeValue(forKey: r.requestID)?.succeed(r)
        case .tunReady(let r):
            pendingTun.removeValue(forKey: r.requestID)?.succeed(r)
        case .tunStats(let t):
            guard askedForTunStats else {
                session.goAway(.protocolError, "the mediator sent TUN_STATS, which this server did not ask for")
                return
            }
            mediatorTunStats = t
        case .packet(let p):
            if let packetReceiver {
                packetReceiver(p.bytes)
            } else {
                strayPackets &+= 1
            }
        case .accepted(let a):
            // Nobody takes connections for that listener (or the id is one we know already): reset
            // the new port and keep no record of it, or a mediator could fill the table for free.
            guard let take = listeners[a.listenerID], ports[a.portID] == nil, session.port(a.portID) == nil else {
                strayAccepted += 1
                // Logged at 1, 10, 100…: a flood of them must not flood the log either.
                if strayAccepted.isPowerOf10 {
                    session.logger.warning(
                        "mediator '\(name)' announced a connection on port \(a.portID) for port \(a.listenerID), which is not listening here; resetting it (\(strayAccepted) so far)"
                    )
                }
                session.send(.reset(.init(portID: a.portID, code: .noSuchPort)))
                return
            }
            let held = max(session.portCount, ports.count)
            guard held < maxPorts else {
                session.logger.warning(
                    "mediator '\(name)' holds \(held) ports (limit \(maxPorts)); resetting accepted port \(a.portID)")
                session.send(.reset(.init(portID: a.portID, code: .limitExceeded)))
                return
            }
            ports[a.portID] = PortRecord(
                id: a.portID, transport: "tcp", kind: "accepted", local: ports[a.listenerID]?.local ?? "", remote: "\(a.peer)",
                owner: ports[a.listenerID]?.owner ?? "")
            take(a)
        case .pong:
            // The session machine delivers only the PONG that answers a probe: this link is alive.
            registry.onControlLoop { [self] in registry.answered(self) }
        case .environment(let e):
            environment = e
            registry.events.post(
                ServerEvent(
                    mediator: name, kind: "environment", detail: "\(PeerText.sanitized(e.hostname)): \(e.interfaces.count) interfaces"))
            for h in environmentHandlers { h(e) }
        default:
            session.goAway(.protocolError, "the mediator sent \(frame.name), which only a server sends")
        }
    }

    public func sessionClosed(_ session: TunnelSession, _ end: SessionEnd) {
        eventLoop.assertInEventLoop()
        attached.store(false, ordering: .relaxed)
        // Before the in-flight answers fail below: with the queue empty, no failure sends another CONNECT.
        admissionTimer?.cancel()
        admissionTimer = nil
        let lost = admission.sessionLost()
        if !lost.isEmpty {
            session.logger.warning("mediator '\(name)': \(lost.count) queued connects reset: \(ConnectAdmission.Refusal.sessionLost)")
        }
        for t in lost {
            if let c = queuedConnects.removeValue(forKey: t) { refuseConnect(c, .sessionLost) }
        }
        queuedConnects.removeAll()
        let waiting = pending
        pending.removeAll()
        let waitingTun = pendingTun
        pendingTun.removeAll()
        let waitingEcho = pendingEcho
        pendingEcho.removeAll()
        for (_, p) in waitingEcho {
            p.fail(OperationError(code: .shuttingDown, message: "session with '\(name)' ended: \(end.message)"))
        }
        for (_, p) in waitingTun {
            p.fail(OperationError(code: .shuttingDown, message: "session with '\(name)' ended: \(end.message)"))
        }
        packetReceiver = nil
        // A session that never established still holds these, and they hold the link (and through
        // it the session and its datagram path): dropped here, or every connection that closed
        // before WELCOME (a scan, a wrong secret, a TLS failure) kept ~60 KiB for good.
        establishedHandlers.removeAll()
        environmentHandlers.removeAll()
        for (_, p) in waiting {
            p.fail(OperationError(code: .shuttingDown, message: "session with '\(name)' ended: \(end.message)"))
        }
        listeners.removeAll()
        ports.removeAll()
        heldReceivers.removeAll()
        datagramPath.close()
        registry.onControlLoop { [self] in registry.detach(self, end) }
        let handlers = closeHandlers
        closeHandlers.removeAll()
        for h in handlers { h(end) }
    }
}

extension Int {
    fileprivate var isPowerOf10: Bool {
        var n = self
        while n >= 10, n % 10 == 0 { n /= 10 }
        return n == 1
    }
}
