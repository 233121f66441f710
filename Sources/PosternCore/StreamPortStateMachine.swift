import NIOCore
import PosternWire

/// One TCP connection relayed through one port of the tunnel, at either end (docs/protocol.md §6), as
/// a value: the I/O side feeds it what happened on the socket and on the tunnel and performs the
/// actions it returns; it reads no clock and touches no channel.
///
/// - Socket bytes become DATA within the peer's window and the peer's payload limit; what cannot go
///   yet (no credit, or the tunnel is full) is held, and the socket is not read meanwhile, so
///   back-pressure reaches the real TCP peer (§6.3).
/// - DATA becomes socket writes, granted back with WINDOW once written.
/// - EOF becomes FINISHED (after any held bytes) and FINISHED a write shutdown: a half-close (§6.4).
/// - A socket error becomes RESET and RESET an abortive close (RST).
///
/// A port may exist before its socket does (a connection accepted on the mediator is announced
/// before the server's own connect finishes): frames that arrive first are kept, the DATA bounded by
/// the window we granted and counted in the session's buffer budget, consecutive DATA joined into
/// one frame, and at most `maxEarlyFrames` frames in all (a peer could otherwise queue any number of
/// small frames that cost no window), and replayed once the socket joins. An empty DATA costs no
/// window and carries nothing: it is accepted (§6.1) and dropped, never written or kept. A socket that ends by FIN after the peer's FIN, while some of its bytes are still held,
/// leaves the port draining: the bytes go out as the peer grants window, then FINISHED.
///
/// A pipelined CONNECT (docs/protocol.md §5.3) starts the server's end joined before the mediator has
/// answered: its DATA goes out within the peer's initial window right behind the CONNECT, and what
/// went out is kept (slices of the read buffers, no copy) until `connectConfirmed`. A CONNECT the
/// mediator refused for limits is sent again later under a new id: `connectRefusedForRetry` puts
/// the kept bytes (and a FINISHED already sent) back in front and pauses the port, `connectRetried`
/// sends them again. The mediator's end of such a port awaits its socket like an accepted one's
/// server end, except that a RESET ends it at once: the connect is given up, not finished first.
public struct StreamPortStateMachine: Sendable {
    /// How a port takes part in a pipelined CONNECT (docs/protocol.md §5.3).
    public enum Pipelining: Hashable, Sendable {
        case none
        /// The server's end: sends before DONE and keeps what it sent until `connectConfirmed`.
        case sendsBeforeDone
        /// The mediator's end while its connect runs: a RESET before the socket joins ends the port.
        case connectingHere
    }

    public enum Phase: Hashable, Sendable {
        /// No socket yet: frames from the peer are kept.
        case awaitingSocket
        /// Relaying between the socket and the tunnel.
        case joined
        /// The socket is gone after its FIN, some of its bytes still held: no socket, only sending.
        case draining
        /// Released: nothing more happens; frames are ignored.
        case released
    }

    /// What to send next on the tunnel, asked in a loop after `.sendHeld` and `.resume`.
    public enum Outbound: Hashable, Sendable {
        /// Send this DATA payload (within credit and the payload limit), then ask again.
        case data(ByteBuffer)
        /// Bytes are held and credit is left, but the tunnel is full: ask to be told when it drains.
        case waitForTunnel
        /// Nothing to send now: nothing held, or no credit (a WINDOW will resume it).
        case idle
        /// Everything held is sent and the socket's EOF was behind it: perform this, then stop.
        case then(StreamPortAction)
    }

    /// Whether to ask the socket for more bytes. With autoRead off, not asking is how reading pauses.
    public enum ReadDecision: Hashable, Sendable {
        case read
        /// Credit is left but the tunnel is full: ask to be told when it drains, then read.
        case waitForTunnel
        case none
    }

    public private(set) var phase: Phase = .awaitingSocket
    public private(set) var halves = StreamState()
    public private(set) var sendWindow: SendWindow
    public private(set) var receiveWindow: ReceiveWindow
    public private(set) var bytesToTunnel: UInt64 = 0
    public private(set) var bytesFromTunnel: UInt64 = 0

    /// Read from the socket but not yet sent, one buffer per read as NIO delivered them. A queue,
    /// not one buffer appended to: at the peer's FIN NIO reads the socket dry whatever the relay asked
    /// (up to the kernel's receive buffer, megabytes), and appending every read to the first grew it
    /// by doubling, copying as it went (34 MiB held at once by a mediator whose eight iperf3 -R
    /// streams ended together).
    private var held = CircularBuffer<ByteBuffer>()
    /// The socket's EOF came while bytes were held: FINISHED goes after them.
    private var eofPending = false
    /// Frames from the peer before the socket joined, and the DATA bytes among them.
    private var early: [Frame] = []
    private var earlyBytes = 0
    /// The bytes of the last `.reserveBuffer` asked for, taken back if the budget refuses them.
    private var lastEarlyReserve = 0
    /// How a socket that joins after the port ended is closed.
    private var closeOnLateJoin: StreamPortAction.SocketClose = .abort
    private let pipelining: Pipelining
    /// The peer's initial window, for a CONNECT sent again (`connectRetried`).
    private let initialSendWindow: UInt32
    /// Pipelined, not confirmed yet: every DATA payload sent so far, in order.
    private var unconfirmed: CircularBuffer<ByteBuffer>?
    /// Pipelined and refused for limits: nothing goes out until `connectRetried`.
    public private(set) var isPaused = false

    /// Frames kept before the socket joins, at most. A legitimate peer sends a few (DATA, joined into
    /// one; FINISHED; RESET): only a hostile one reaches this.
    public static let maxEarlyFrames = 64

    /// `sendWindow`: the peer's initial window; `receiveWindow`: ours (§6.3).
    public init(sendWindow: UInt32, receiveWindow: UInt32, pipelining: Pipelining = .none) {
        self.sendWindow = SendWindow(initial: sendWindow)
        self.receiveWindow = ReceiveWindow(size: receiveWindow)
        self.pipelining = pipelining
        self.initialSendWindow = sendWindow
        if pipelining == .sendsBeforeDone { unconfirmed = [] }
    }

    /// Pipelined and not confirmed yet: DATA sent so far is kept.
    public var isUnconfirmed: Bool { unconfirmed != nil }
    /// The bytes sent before DONE and kept for a retry.
    public var unconfirmedBytes: Int { unconfirmed?.reduce(0) { $0 + $1.readableBytes } ?? 0 }

    // MARK: - Pipelined CONNECT (server end)

    /// DONE came: what was sent stays sent.
    public mutating func connectConfirmed() {
        unconfirmed = nil
        isPaused = false
    }

    /// FAILED `limitExceeded` came and the CONNECT will go again under a new id: what was sent goes
    /// back in front of what is held, FINISHED too, and the port sends nothing until `connectRetried`
    /// (the mediator never had the old id; frames for it would only be dropped there, §6.4).
    public mutating func connectRefusedForRetry() {
        guard let sent = unconfirmed, phase == .joined || phase == .draining else { return }
        var again = sent
        let n = sent.reduce(0) { $0 + $1.readableBytes }
        for b in held { again.append(b) }
        held = again
        unconfirmed = []
        bytesToTunnel &-= UInt64(n)
        sendWindow = SendWindow(initial: initialSendWindow)
        if halves.sentFin {
            // Nothing came from the peer before DONE, so only our FIN is undone.
            halves = StreamState()
            eofPending = true
        }
        isPaused = true
    }

    /// The CONNECT went again under its new id: send (`resume`) what was kept.
    public mutating func connectRetried() -> StreamPortAction {
        guard isPaused, phase != .released else { return .none }
        isPaused = false
        return .resume
    }

    /// Bytes read from the socket and not yet sent.
    public var heldBytes: Int { held.reduce(0) { $0 + $1.readableBytes } }
    /// DATA bytes kept before the socket joined (counted in the session budget).
    public var earlyBufferedBytes: Int { earlyBytes }
    public var earlyFrameCount: Int { early.count }
    public var isEOFPending: Bool { eofPending }

    // MARK: - Socket side

    /// The port's socket is ready (the handler joined its channel).
    public mutating func socketJoined() -> StreamPortAction {
        switch phase {
        case .awaitingSocket:
            phase = .joined
            var frames: [Frame] = []
            swap(&frames, &early)
            let kept = earlyBytes
            earlyBytes = 0
            return .replay(frames, releaseBuffer: kept)
        case .released:
            // The port ended (RESET, the session went) while the socket was being connected.
            return .closeSocket(closeOnLateJoin)
        case .joined, .draining:
            return .none
        }
    }

    /// The socket delivered bytes. One read may deliver several buffers (NIO's maxMessagesPerRead,
    /// and everything up to EOF once the peer's FIN came): once one of them is held, the rest queue
    /// behind it, never replace it.
    public mutating func socketRead(_ bytes: ByteBuffer) -> StreamPortAction {
        guard phase == .joined else { return .none }
        let first = held.isEmpty
        if bytes.readableBytes > 0 { held.append(bytes) }
        return first ? .sendHeld : .none
    }

    /// The socket reached end of input (a half-close event).
    public mutating func socketInputClosed() -> StreamPortAction {
        guard phase == .joined else { return .none }
        if !held.isEmpty || isPaused {
            eofPending = true
            return .none
        }
        return finishOutput()
    }

    /// The socket failed: an RST on this side, passed on as RESET with the errno's code.
    public mutating func socketFailed(_ code: ErrorCode, _ description: String) -> StreamPortAction {
        guard phase != .released else { return .none }
        return reset(code, reason: .socketError(description))
    }

    /// The socket closed (channel inactive).
    public mutating func socketClosed() -> StreamPortAction {
        guard phase == .joined else { return .none }
        guard halves.receivedFin && !halves.sentFin else {
            // Gone without FIN both ways: the peer must not wait for more.
            return reset(.connectionReset, reason: .socketClosed)
        }
        // Our output was already shut (the peer finished first). NIO turns the EOF that arrives in
        // that state into a full close without an input-closed event: this is the socket's FIN, so
        // finish normally, after any bytes still held, not with RESET.
        if !held.isEmpty {
            eofPending = true
            phase = .draining
            return .none
        }
        return finishOutput()
    }

    /// A write of `n` bytes of DATA to the socket completed, successfully or not.
    public mutating func socketWriteCompleted(_ n: Int, succeeded: Bool) -> StreamPortAction {
        guard succeeded, phase != .released else { return .none }
        if let increment = receiveWindow.consumed(n) { return .grant(increment) }
        return .none
    }

    /// Whether to ask the socket for more bytes now.
    public func readDecision(tunnelWritable: Bool) -> ReadDecision {
        guard phase == .joined, !isPaused, held.isEmpty, !halves.sentFin, sendWindow.credit > 0 else { return .none }
        return tunnelWritable ? .read : .waitForTunnel
    }

    /// The next thing to send of what the socket delivered. `maxPayload`: the largest DATA payload
    /// the peer accepts (§6.1).
    public mutating func nextOutbound(tunnelWritable: Bool, maxPayload: Int) -> Outbound {
        precondition(maxPayload > 0, "DATA needs room for at least one byte")
        guard phase == .joined || phase == .draining, !isPaused else { return .idle }
        while held.first?.readableBytes == 0 { held.removeFirst() }
        guard !held.isEmpty else {
            guard eofPending else { return .idle }
            eofPending = false
            return .then(finishOutput())
        }
        guard sendWindow.credit > 0, tunnelWritable else {
            return sendWindow.credit > 0 ? .waitForTunnel : .idle
        }
        let n = min(held[held.startIndex].readableBytes, sendWindow.credit, maxPayload)
        let slice = held[held.startIndex].readSlice(length: n)!
        unconfirmed?.append(slice)
        sendWindow.consume(n)
        bytesToTunnel &+= UInt64(n)
        if held[held.startIndex].readableBytes == 0 { held.removeFirst() }
        return .data(slice)
    }

    // MARK: - Tunnel side

    /// DATA, DATAGRAM, WINDOW, FINISHED or RESET for this port.
    public mutating func tunnelReceived(_ frame: Frame) -> StreamPortResult {
        switch phase {
        case .released: return .ignored
        case .awaitingSocket: return keepEarly(frame)
        case .joined, .draining: break
        }
        switch frame {
        case .data(let d):
            let n = d.bytes.readableBytes
            do { try receiveWindow.received(n) } catch { return streamError(.dataBeyondWindow(bytes: n)) }
            bytesFromTunnel &+= UInt64(n)
            // Draining implies the peer's FIN: there is no socket to write to, and no DATA is due.
            if halves.receivedFin { return streamError(.dataAfterFinished) }
            // Nothing to write: a write each would queue on a socket that is not reading.
            if n == 0 { return .succeeded(.none) }
            return .succeeded(.writeToSocket(d.bytes))
        case .window(let w):
            do { try sendWindow.grant(w.increment) } catch { return streamError(.windowOverflow) }
            return .succeeded(.resume)
        case .finished:
            switch halves.apply(.remoteFin) {
            case .halfClosed: return .succeeded(.shutdownOutput)
            case .closed: return .succeeded(end(.none, .afterWrites, .closed))
            case .duplicate: return streamError(.finishedTwice)
            case .none: return .succeeded(.none)
            }
        case .reset(let r):
            _ = halves.apply(.reset)
            return .succeeded(end(.none, .abort, .resetByPeer(r.code)))
        case .datagram:
            return streamError(.datagramOnStreamPort)
        default:
            return .ignored
        }
    }

    /// The session could not take the bytes of the last `.writeToSocket` or `.reserveBuffer` from
    /// its buffer budget: too much is waiting for slow sockets. This port is reset.
    public mutating func bufferReserveFailed() -> StreamPortAction {
        switch phase {
        case .awaitingSocket:
            // The last DATA's bytes were never counted in the budget (they may have been joined to
            // the DATA before): forget them, then release the rest.
            earlyBytes -= lastEarlyReserve
            lastEarlyReserve = 0
            return reset(.limitExceeded, reason: .sessionBufferFullBeforeReady)
        case .joined, .draining:
            return reset(.limitExceeded, reason: .sessionBufferFull)
        case .released:
            return .none
        }
    }

    /// The tunnel can take writes again.
    public mutating func tunnelBecameWritable() -> StreamPortAction {
        phase == .released ? .none : .resume
    }

    /// The session is gone: drop the socket at once; no frame can be sent any more.
    public mutating func tunnelClosed() -> StreamPortAction {
        guard phase != .released else { return .none }
        return end(.none, .abort, .tunnelClosed)
    }

    // MARK: - Requests of the owner

    /// Reset both sides: RESET to the peer, RST on the socket.
    public mutating func reset(_ code: ErrorCode, reason: StreamPortEnd) -> StreamPortAction {
        guard phase != .released else { return .none }
        _ = halves.apply(.reset)
        return end(.reset(code), .abort, reason)
    }

    /// The port's request failed (its CONNECT answered FAILED, or the mediator could not connect a
    /// pipelined port): the peer has no such port, so nothing is sent; the socket, if any, is aborted
    /// and kept frames are dropped unwritten.
    public mutating func abandon(reason: StreamPortEnd) -> StreamPortAction {
        guard phase != .released else { return .none }
        _ = halves.apply(.reset)
        return end(.none, .abort, reason)
    }

    /// CLOSE from the server (§5.5): close the socket normally; the server already forgot the port.
    public mutating func closeByRequest() -> StreamPortAction {
        guard phase != .released else { return .none }
        return end(.none, .now, .closedByRequest)
    }

    // MARK: - Internals

    private mutating func keepEarly(_ frame: Frame) -> StreamPortResult {
        if pipelining == .connectingHere, case .reset(let r) = frame {
            // The server gave up on the connection before it was up: so does the connect (§5.3).
            _ = halves.apply(.reset)
            return .succeeded(end(.none, .abort, .resetByPeer(r.code)))
        }
        if case .data(let d) = frame {
            let n = d.bytes.readableBytes
            guard earlyBytes + n <= Int(receiveWindow.size) else {
                return streamError(.dataBeyondWindowBeforeReady(bytes: n))
            }
            // Checked on replay like any DATA (after FINISHED it still resets the port), but an
            // empty one is nothing to keep.
            if n == 0, !early.contains(where: Self.isFinished) { return .succeeded(.none) }
            if n > 0, case .data(var last)? = early.last {
                // Joined to the DATA before it: many small frames take one place in the queue.
                var bytes = d.bytes
                last.bytes.writeBuffer(&bytes)
                early[early.count - 1] = .data(last)
                earlyBytes += n
                lastEarlyReserve = n
                return .succeeded(.reserveBuffer(n))
            }
            guard early.count < Self.maxEarlyFrames else {
                return streamError(.tooManyFramesBeforeReady(Self.maxEarlyFrames))
            }
            earlyBytes += n
            lastEarlyReserve = n
            early.append(frame)
            return .succeeded(.reserveBuffer(n))
        }
        guard early.count < Self.maxEarlyFrames else {
            return streamError(.tooManyFramesBeforeReady(Self.maxEarlyFrames))
        }
        early.append(frame)
        return .succeeded(.none)
    }

    private static func isFinished(_ frame: Frame) -> Bool {
        if case .finished = frame { return true }
        return false
    }

    /// The socket's EOF, once nothing is held before it.
    private mutating func finishOutput() -> StreamPortAction {
        switch halves.apply(.localEOF) {
        case .halfClosed: return .sendFinished
        case .closed: return end(.finished, .afterWrites, .closed)
        case .none, .duplicate: return .none
        }
    }

    private mutating func streamError(_ violation: StreamPortViolation) -> StreamPortResult {
        .streamError(violation, then: reset(.protocolError, reason: .violation(violation)))
    }

    private mutating func end(
        _ lastFrame: StreamPortAction.LastFrame, _ socket: StreamPortAction.SocketClose, _ reason: StreamPortEnd
    ) -> StreamPortAction {
        phase = .released
        // A paused port's id was never the mediator's: nothing is sent for it (it would be dropped, §6.4).
        let lastFrame: StreamPortAction.LastFrame = isPaused ? .none : lastFrame
        unconfirmed = nil
        held.removeAll()
        eofPending = false
        early = []
        let release = earlyBytes
        earlyBytes = 0
        closeOnLateJoin = socket == .now ? .now : .abort
        return .end(.init(lastFrame: lastFrame, socket: socket, reason: reason, releaseBuffer: release))
    }
}
