import Logging
import NIOCore
import PosternCore
import PosternWire

/// What a session reports to the service above it (server or mediator).
public protocol TunnelSessionDelegate: AnyObject {
    func sessionEstablished(_ session: TunnelSession, _ info: EstablishedSession)
    /// Requests, answers, ACCEPTED, ENVIRONMENT: every established frame that is not per-port relay.
    func session(_ session: TunnelSession, received frame: Frame)
    func sessionClosed(_ session: TunnelSession, _ end: SessionEnd)
}

/// One tunnel connection, at either end: feeds the pure session state machine (the server's or the
/// mediator's: it does not know which), performs its actions, keeps the port table and routes relay
/// frames to ports. Everything here runs on the channel's event loop.
public final class TunnelSession: ChannelInboundHandler {
    public typealias InboundIn = Frame
    public typealias OutboundOut = ByteBuffer

    public let eventLoop: EventLoop
    public var logger: Logger
    public var delegate: TunnelSessionDelegate?
    public private(set) var established: EstablishedSession?
    public private(set) var end: SessionEnd?
    /// Local settings: our receive window and frame limit.
    public let settings: SessionSettings
    public private(set) var remoteAddress: SocketAddress?
    /// The transport of this connection: what its handshake learned goes to the machine
    /// (`transportReady`), and it is told when the peer proved the secret (trust on first use).
    public var transport: TransportConnection?
    /// Told how far an unauthenticated connection got (transport ready, first frame), so the server
    /// can spare the connections that are further along when it must drop one.
    public var onHandshakeProgress: ((UnauthenticatedConnections.Stage) -> Void)?

    private var machine: any SessionStateMachine
    /// The latest keepalive round trip on this connection (PING to PONG), once one was measured.
    public var keepaliveRoundTrip: TimeAmount? { machine.keepaliveRoundTrip }
    private var transportReadySent = false
    private var context: ChannelHandlerContext?
    private var ports: [UInt32: TunnelPort] = [:]
    /// Ports that stopped reading because the tunnel was not writable.
    private var blocked: [ObjectIdentifier: TunnelPort] = [:]
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var flushScheduled = false
    /// Bytes written since the last flush. Past `flushThreshold` the session flushes at once instead
    /// of at the end of the turn: TLS encrypts each flush into one buffer that stays alive until the
    /// socket takes it, so unbounded batches meant multi-megabyte buffers (and a high RSS after load).
    private var unflushed = 0
    static let flushThreshold = 128 << 10
    /// DATA payloads up to this size are copied behind their header (see `sendData`).
    public static let inlinePayloadLimit = 8 << 10
    private var inRead = false
    private let now: () -> NIODeadline
    /// Frames other than DATA (PONG, answers, RESET, WINDOW…) written since the channel stopped
    /// being writable, and their bytes. DATA is paced by the peer's windows and by writability; these
    /// are not: a peer that sends PINGs and never reads would make PONGs pile up without bound.
    private var stalledFrames = 0
    private var stalledBytes = 0
    private var stalledLimitHit = false
    /// Frames other than DATA encoded back to back, written before the next DATA or flush.
    private var control: ByteBuffer?
    /// Past either bound while the channel stays unwritable the session ends (the peer is not
    /// reading what it asks for). A peer that reads never comes near: writability returns at the
    /// low-water mark, and window-paced traffic sends a few WINDOW frames per port per stall.
    public static let maxStalledFrames = 32768
    public static let maxStalledBytes = 2 << 20

    /// Bytes received for this session's ports and not yet written to their sockets (bounded by
    /// `settings.maxBufferedBytes`).
    public private(set) var bufferedBytes = 0

    /// Counters for the admin API. `bytesIn` and `bytesOut` count the same thing both ways: DATA and
    /// DATAGRAM payload bytes (what the ports carried), not frame headers, peers or control frames; `ctl status`
    /// showed 0 B in and 194 KiB out for a session whose traffic was all datagrams and OPENs.
    public private(set) var bytesIn: UInt64 = 0
    public private(set) var bytesOut: UInt64 = 0
    public private(set) var framesIn: UInt64 = 0
    /// Server: WELCOME, and whatever follows it, waits in this end's buffer until `admit()` (the name
    /// is this session's) or is replaced by REFUSED when `goAway` refuses the session first (the name
    /// is in use, the server is full). A mediator refused for its name logged "connected (session N)"
    /// when WELCOME went before the decision. Set before the handshake; the mediator never sets it.
    public var holdsWelcomeUntilAdmitted = false
    /// Established here, WELCOME held, no decision yet.
    public private(set) var awaitingAdmission = false
    public private(set) var framesOut: UInt64 = 0

    /// `now` is the clock every input to the machine is stamped with (the composition root passes the
    /// real one; tests a clock they move).
    public init(
        machine: any SessionStateMachine, settings: SessionSettings, eventLoop: EventLoop, logger: Logger,
        now: @escaping () -> NIODeadline
    ) {
        self.machine = machine
        self.settings = settings
        self.eventLoop = eventLoop
        self.logger = logger
        self.now = now
    }

    public var isWritable: Bool { context?.channel.isWritable ?? false }
    public var isOpen: Bool { context != nil && end == nil }
    public var portCount: Int { ports.count }
    public func port(_ id: UInt32) -> TunnelPort? { ports[id] }

    // MARK: - Port table

    public func register(_ port: TunnelPort) {
        ports[port.portID] = port
    }

    public func unregister(_ portID: UInt32) {
        if let p = ports.removeValue(forKey: portID) { blocked[ObjectIdentifier(p)] = nil }
    }

    /// A port holds data until the tunnel drains; it is called back with `tunnelBecameWritable`.
    public func waitForWritable(_ port: TunnelPort) {
        blocked[ObjectIdentifier(port)] = port
    }

    /// Takes `n` bytes of the session's receive budget; false when that would pass the limit.
    public func reserveBuffer(_ n: Int) -> Bool {
        guard bufferedBytes + n <= settings.maxBufferedBytes else { return false }
        bufferedBytes += n
        return true
    }

    public func releaseBuffer(_ n: Int) {
        bufferedBytes -= n
    }

    // MARK: - Sending

    /// Writes one frame; the flush follows at the end of this event-loop turn.
    public func send(_ frame: Frame) {
        guard let context, end == nil else { return }
        // Small frames share one buffer until the next DATA or flush: a write each costs the channel
        // far more than the frame's bytes (a PING flood answered frame by frame held ~400 bytes per
        // 14-byte PONG before the channel's byte count said "unwritable"). Encoded in place.
        if control == nil { control = context.channel.allocator.buffer(capacity: 1024) }
        let start = control!.writerIndex
        control!.writeFrame(frame)
        let n = control!.writerIndex - start
        if !context.channel.isWritable, !stalledLimitHit {
            stalledFrames += 1
            stalledBytes += n
            if stalledFrames > Self.maxStalledFrames || stalledBytes > Self.maxStalledBytes {
                control!.moveWriterIndex(to: start)  // this frame is not sent
                peerNotReading()
                return
            }
        }
        switch frame {
        case .data(let d): bytesOut &+= UInt64(d.bytes.readableBytes)
        case .datagram(let d): bytesOut &+= UInt64(d.bytes.readableBytes)
        default: break
        }
        framesOut &+= 1
        wrote(n, context)
    }

    /// Writes the small frames gathered since the last write, keeping their order with DATA.
    private func writeControl(_ context: ChannelHandlerContext) {
        guard let buffer = control else { return }
        control = nil
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// The peer keeps sending frames that need an answer but does not read the answers.
    private func peerNotReading() {
        stalledLimitHit = true
        let message =
            "the peer does not read: \(stalledFrames) frames (\(stalledBytes) bytes) of answers and control frames wait to be sent"
        logger.warning("ending the session with \(remoteAddress?.display ?? "peer"): \(message)")
        // The GOAWAY goes behind everything that waits; the close does not wait for it.
        goAway(.limitExceeded, message)
    }

    /// DATA. A small payload is copied behind its header, into the buffer that gathers small frames:
    /// over TLS each buffer written is its own `SSL_write` and its own record, so a 64-byte request
    /// sent as header + payload cost two records (and two decryptions at the peer) where one will do.
    /// A large payload is not copied: the header goes in its own small buffer (writev joins them).
    public func sendData(portID: UInt32, _ payload: ByteBuffer) {
        guard let context, end == nil else { return }
        let count = payload.readableBytes
        if count <= Self.inlinePayloadLimit {
            if control == nil {
                control = context.channel.allocator.buffer(capacity: max(1024, Frame.headerLength + Frame.Data.prefixLength + count))
            }
            let start = control!.writerIndex
            control!.writeDataPrefix(portID: portID, count: count)
            control!.writeImmutableBuffer(payload)
            let n = control!.writerIndex - start
            bytesOut &+= UInt64(count)
            framesOut &+= 1
            return wrote(n, context)
        }
        writeControl(context)
        var header = context.channel.allocator.buffer(capacity: Frame.headerLength + Frame.Data.prefixLength)
        header.writeDataPrefix(portID: portID, count: payload.readableBytes)
        bytesOut &+= UInt64(payload.readableBytes)
        framesOut &+= 1
        context.write(wrapOutboundOut(header), promise: nil)
        context.write(wrapOutboundOut(payload), promise: nil)
        wrote(header.readableBytes + payload.readableBytes, context)
    }

    private func wrote(_ n: Int, _ context: ChannelHandlerContext) {
        unflushed += n
        if unflushed >= Self.flushThreshold {
            flush(context)
        } else {
            scheduleFlush()
        }
    }

    private func flush(_ context: ChannelHandlerContext) {
        guard !awaitingAdmission else { return }
        writeControl(context)
        unflushed = 0
        context.flush()
    }

    private func scheduleFlush() {
        guard !flushScheduled, !inRead else { return }
        flushScheduled = true
        eventLoop.execute { [self] in
            flushScheduled = false
            if let context { flush(context) }
        }
    }

    /// The largest DATA payload the peer accepts.
    public var maxDataPayload: Int {
        // The peer's limit covers the whole payload, port id included (handshake: at least 1024).
        let peer = Int(established?.peerMaxPayload ?? settings.maxPayload)
        return min(peer - Frame.Data.prefixLength, 1 << 20)
    }

    /// Ends the session on our side with GOAWAY (shutdown, replaced, protocol error in a layer above).
    public func goAway(_ code: ErrorCode, _ message: String) {
        if awaitingAdmission { return refuseAdmission(code, message) }
        perform(machine.goAway(code, message))
    }

    /// The session may go on: WELCOME and what waited behind it go out.
    public func admit() {
        guard awaitingAdmission else { return }
        awaitingAdmission = false
        if let context { flush(context) }
    }

    /// Not admitted: what waited (WELCOME first) is dropped unsent and the peer gets REFUSED, as for
    /// any refusal in the handshake (docs/protocol.md §4.1); the connection closes.
    private func refuseAdmission(_ code: ErrorCode, _ message: String) {
        awaitingAdmission = false
        control = nil
        unflushed = 0
        send(.refused(.init(code: code, message: message)))
        finish(SessionEnd(code: code, message: message))
    }

    /// Asks the established peer to answer a PING within `timeout` (the server does this when another
    /// session claims the name); the answer reaches the delegate as a PONG, silence ends the session.
    public func probe(timeout: TimeAmount) {
        perform(machine.probe(timeout: timeout, now: now()))
    }

    // MARK: - Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context: context) }
    }

    /// The context holds this handler: kept past the channel's end, the pair (and through the
    /// delegate's closures the link, its datagram path and, with TLS, the connection's SSL state,
    /// ~60 KiB) was never freed — every service-port connection leaked it.
    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private var started = false
    private func start(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        remoteAddress = context.channel.remoteAddress
        perform(machine.start(now: now()))
        // Plain TCP is ready at once; TLS says so at the end of its handshake (`TransportReadyEvent`).
        // Without a transport (tests on a bare channel) the connection is plain.
        let facts: TransportFacts? = transport == nil ? .plain : transport?.facts
        if let facts { transportReady(facts) }
    }

    private func transportReady(_ facts: TransportFacts) {
        guard !transportReadySent else { return }
        transportReadySent = true
        perform(machine.transportReady(facts, now: now()))
        if established == nil, end == nil { onHandshakeProgress?(.transportReady) }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let ready = event as? TransportReadyEvent {
            transportReady(ready.facts)
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        framesIn &+= 1
        inRead = true
        if framesIn == 1, established == nil { onHandshakeProgress?(.helloReceived) }
        perform(machine.receive(frame, now: now()))
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        inRead = false
        flush(context)
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stalledFrames = 0
            stalledBytes = 0
        }
        if context.channel.isWritable && !blocked.isEmpty {
            let waiting = blocked.values
            blocked.removeAll(keepingCapacity: true)
            for port in waiting { port.tunnelBecameWritable() }
        }
        context.fireChannelWritabilityChanged()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let wire = error as? WireError {
            // A frame we cannot accept ends the session with the reason, never the process.
            logger.warning("malformed input from \(remoteAddress?.display ?? "peer"): \(wire)")
            perform(machine.decodeFailed(wire, now: now()))
        } else if let t = error as? TransportError {
            // A trust failure (a key other than the pinned one) is logged as an authentication failure.
            finish(SessionEnd(code: t.aboutTrust ? .authenticationFailed : .connectionReset, message: t.description))
            context.close(promise: nil)
        } else {
            finish(SessionEnd(code: .connectionReset, message: "tunnel connection failed: \(error)"))
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        finish(end ?? SessionEnd(code: .connectionReset, message: "tunnel connection closed by the peer"))
        context.fireChannelInactive()
    }

    // MARK: - Actions

    private func perform(_ actions: [SessionAction]) {
        for action in actions {
            switch action {
            case .send(let frame):
                send(frame)
            case .established(let info):
                established = info
                if holdsWelcomeUntilAdmitted { awaitingAdmission = true }
                // The peer proved the secret: only now may the mediator's transport trust the server
                // key on first use (a no-op at the server).
                transport?.authenticated()
                delegate?.sessionEstablished(self, info)
            case .deliver(let frame):
                deliver(frame)
            case .close(let end):
                finish(end)
            }
        }
        rescheduleTimer()
    }

    private func deliver(_ frame: Frame) {
        let portID: UInt32
        switch frame {
        case .data(let d):
            bytesIn &+= UInt64(d.bytes.readableBytes)
            portID = d.portID
        case .datagram(let d):
            bytesIn &+= UInt64(d.bytes.readableBytes)
            portID = d.portID
        case .window(let w): portID = w.portID
        case .finished(let f): portID = f.portID
        case .reset(let r): portID = r.portID
        case .denied(let d): portID = d.portID
        default:
            delegate?.session(self, received: frame)
            return
        }
        // Frames for a port that just closed here are expected (they crossed on the wire): drop them.
        ports[portID]?.tunnelReceived(frame)
    }

    private func finish(_ end: SessionEnd) {
        guard self.end == nil else { return }
        self.end = end
        timer?.cancel()
        timer = nil
        let all = ports.values
        ports.removeAll()
        blocked.removeAll()
        for port in all { port.tunnelClosed() }
        if let context {
            flush(context)
            context.close(promise: nil)
        }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.sessionClosed(self, end)
    }

    private func rescheduleTimer() {
        guard end == nil, let deadline = machine.nextDeadline else {
            timer?.cancel()
            timer = nil
            return
        }
        if let timerDeadline, timerDeadline == deadline, timer != nil { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = eventLoop.scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            tick()
        }
    }

    private func tick() {
        perform(machine.tick(now: now()))
    }
}
