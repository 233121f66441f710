import NIOCore
import PosternCore
import PosternWire

// The per-port relay above the session machines in the fuzz driver (docs/protocol.md §6): each end
// runs the real `StreamPortStateMachine` per port and performs its actions the way `StreamRelay`
// (Sources/PosternTunnel) does, with a modelled socket in place of a channel and the session's buffer
// budget as a counter. The script plays the socket (joins, reads, EOF, errors, closes, completed
// writes), the tunnel's writability, and the ports' owners (reset, CLOSE from the server); frames the
// session delivers for a port go to `tunnelReceived`, and the frames the machine sends go to the
// peer through the harness's connection.
//
// A port exists at an end from its first use there (a command, or a frame delivered for it), without
// a socket: frames that come first are kept by the machine and replayed when the socket joins. A
// socket event joins the socket first if the script did not (a read needs a socket). A port id is
// used once per session: once one end released it, the other end never starts a port of that id
// (the real ends allocate ids so; a frame crossing a RESET finds the port released and is ignored).
//
// What each end's socket reads is a deterministic byte stream (`content`), so the receiving end
// checks every byte it writes to its socket against what the peer's socket read, in order.

/// Which port a relay command means: bit 0 the end, bits 1-2 one of four port ids, bit 3 (reads
/// only) whether the socket delivers the read as two buffers.
struct PortRef {
    var end: End
    var portID: UInt32
    var split: Bool
    init(_ byte: UInt8) {
        end = byte & 1 == 0 ? .server : .mediator
        portID = 1 + UInt32(byte >> 1 & 3)
        split = byte & 8 != 0
    }
}

/// One relayed TCP port at one end: the real machine and what `StreamRelay` and its channel hold
/// around it.
struct RelayPort {
    enum Socket { case absent, open, gone }

    var machine: StreamPortStateMachine
    var socket = Socket.absent
    /// NIO's read(): the relay asked the socket for bytes, and the next read may deliver them.
    var readPending = false
    var inputClosed = false
    var outputShut = false
    /// The relay closes the socket once its writes are done (`SocketClose.afterWrites`).
    var closingAfterWrites = false
    /// Socket writes not completed yet, their sizes in order (each counted in the session budget).
    var writes: [Int] = []
    /// Registered with the session to hear `tunnelBecameWritable`.
    var blocked = false
    /// Bytes this end's socket read (the stream the peer must write to its socket), and bytes of the
    /// peer's stream written to this end's socket.
    var readCount = 0
    var writtenCount = 0
    var sentFinished = false
    /// How the port ended, once its `.end` was performed.
    var ended: StreamPortAction.Ending?

    var released: Bool { machine.phase == .released }
}

/// What the relays did, summed over both ends: the seeds' tests check a replay reached each path.
public struct RelayCounts {
    public var grants = 0
    public var replays = 0
    public var bufferRefusals = 0
    public var halfCloses = 0
    public var closedBothWays = 0
    public var closedByRequest = 0
    public var resetsByPeer = 0
    public var waitsForTunnel = 0
    public var drains = 0
    public var lateJoins = 0
}

extension SessionFuzzHarness {
    /// The byte at `offset` of what `end`'s socket for port `id` reads: no two consecutive bytes,
    /// nor bytes 256 apart, are equal, so a lost, repeated or reordered slice shows.
    static func content(_ end: End, _ id: UInt32, _ offset: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: offset &+ offset >> 8 &+ offset >> 16 &+ end.rawValue << 6 &+ Int(id) << 3)
    }

    /// Whether `end` has port `id`, creating it on first use; false before the session is
    /// established (no relay yet), after it closed, or when the peer already released that id.
    mutating func port(_ id: UInt32, at end: End) -> Bool {
        guard !self[end].closed, let session = self[end].established else { return false }
        if self[end].ports[id] != nil { return true }
        if self[end.peer].ports[id]?.released == true { return false }
        // As StreamRelay: the peer's window for sending, ours for receiving.
        let machine = StreamPortStateMachine(
            sendWindow: session.peerInitialWindow, receiveWindow: self[end].settings.initialWindow)
        self[end].ports[id] = RelayPort(machine: machine)
        return true
    }

    /// The port's socket, joined first if it is not there yet; false if the port has none open.
    mutating func socket(_ ref: PortRef) throws -> Bool {
        guard port(ref.portID, at: ref.end) else { return false }
        if self[ref.end].ports[ref.portID]!.socket == .absent { try join(ref.portID, at: ref.end) }
        return self[ref.end].ports[ref.portID]!.socket == .open
    }

    // MARK: Script commands

    /// The socket connected (StreamRelay's handlerAdded).
    mutating func socketJoined(_ ref: PortRef) throws {
        _ = try socket(ref)
    }

    mutating func join(_ id: UInt32, at end: End) throws {
        self[end].ports[id]!.socket = .open
        let action = self[end].ports[id]!.machine.socketJoined()
        if case .closeSocket = action { self[end].counts.lateJoins += 1 }
        try perform(action, port: id, at: end)
        readIfAllowed(id, at: end)
    }

    /// The socket read `length` bytes, if the relay asked it to read.
    mutating func socketRead(_ ref: PortRef, length: Int) throws {
        guard try socket(ref), length > 0 else { return }
        let (id, end) = (ref.portID, ref.end)
        guard self[end].ports[id]!.readPending, !self[end].ports[id]!.inputClosed else { return }
        self[end].ports[id]!.readPending = false
        let start = self[end].ports[id]!.readCount
        self[end].ports[id]!.readCount += length
        var bytes = ByteBuffer(bytes: (start..<start + length).map { Self.content(end, id, $0) })
        // One read may deliver several buffers (maxMessagesPerRead).
        if ref.split && length > 1 {
            let first = bytes.readSlice(length: length / 2)!
            try perform(self[end].ports[id]!.machine.socketRead(first), port: id, at: end)
        }
        try perform(self[end].ports[id]!.machine.socketRead(bytes), port: id, at: end)
        // channelReadComplete.
        readIfAllowed(id, at: end)
    }

    /// The socket reached end of input (ChannelEvent.inputClosed).
    mutating func socketInputClosed(_ ref: PortRef) throws {
        guard try socket(ref), !self[ref.end].ports[ref.portID]!.inputClosed else { return }
        self[ref.end].ports[ref.portID]!.inputClosed = true
        self[ref.end].ports[ref.portID]!.readPending = false
        try perform(self[ref.end].ports[ref.portID]!.machine.socketInputClosed(), port: ref.portID, at: ref.end)
    }

    /// The socket failed (errorCaught with ECONNRESET).
    mutating func socketFailed(_ ref: PortRef) throws {
        guard try socket(ref) else { return }
        try perform(
            self[ref.end].ports[ref.portID]!.machine.socketFailed(.connectionReset, "fuzz: connection reset"),
            port: ref.portID, at: ref.end)
    }

    /// The socket went away (channelInactive): its pending writes fail first.
    mutating func socketClosed(_ ref: PortRef) throws {
        guard try socket(ref) else { return }
        try dropSocket(ref.portID, at: ref.end)
    }

    /// The first `count` pending socket writes completed (0: all of them).
    mutating func socketWritesCompleted(_ ref: PortRef, count: Int) throws {
        let (id, end) = (ref.portID, ref.end)
        guard let p = self[end].ports[id], !p.writes.isEmpty else { return }
        for _ in 0..<(count == 0 ? p.writes.count : min(count, p.writes.count)) {
            let n = self[end].ports[id]!.writes.removeFirst()
            self[end].buffered -= n
            try perform(self[end].ports[id]!.machine.socketWriteCompleted(n, succeeded: true), port: id, at: end)
        }
        if self[end].ports[id]!.closingAfterWrites && self[end].ports[id]!.writes.isEmpty {
            try dropSocket(id, at: end)
        }
    }

    /// The owner reset the port (a connect that failed, say).
    mutating func resetByOwner(_ ref: PortRef) throws {
        guard port(ref.portID, at: ref.end) else { return }
        let action = self[ref.end].ports[ref.portID]!.machine.reset(.refused, reason: .aborted("fuzz: reset by owner"))
        try perform(action, port: ref.portID, at: ref.end)
    }

    /// The server closes the port (the remote socket API's CLOSE, §5.5): it forgets the port and
    /// sends CLOSE; the mediator's relay closes its socket normally when CLOSE arrives.
    mutating func closeByRequest(_ id: UInt32) throws {
        guard let p = self[.server].ports[id], !p.released, !self[.server].closed else { return }
        try perform(self[.server].ports[id]!.machine.closeByRequest(), port: id, at: .server)
        try write(.close(.init(requestID: id, portID: id)), from: .server)
    }

    /// The tunnel's channel changed writability; ports waiting for it resume (channelWritabilityChanged).
    mutating func setWritable(_ writable: Bool, at end: End) throws {
        guard self[end].writable != writable else { return }
        self[end].writable = writable
        guard writable else { return }
        for id in self[end].ports.keys.sorted() where self[end].ports[id]!.blocked {
            self[end].ports[id]!.blocked = false
            try perform(self[end].ports[id]!.machine.tunnelBecameWritable(), port: id, at: end)
        }
    }

    /// The session of `end` ended: every port goes at once (TunnelSession.finish).
    mutating func closePorts(at end: End) throws {
        for id in self[end].ports.keys.sorted() where self[end].ports[id]!.ended == nil {
            self[end].ports[id]!.blocked = false
            try perform(self[end].ports[id]!.machine.tunnelClosed(), port: id, at: end)
        }
    }

    /// A frame the session machine delivered to `end`'s layer above.
    mutating func relayReceive(_ frame: Frame, at end: End) throws {
        let id: UInt32
        switch frame {
        case .data(let m): id = m.portID
        case .window(let m): id = m.portID
        case .finished(let m): id = m.portID
        case .reset(let m): id = m.portID
        case .datagram(let m): id = m.portID
        case .close(let m):
            // Only the mediator's API takes CLOSE; a port it does not have is refused there.
            guard end == .mediator, let p = self[.mediator].ports[m.portID], !p.released else { return }
            return try perform(self[.mediator].ports[m.portID]!.machine.closeByRequest(), port: m.portID, at: .mediator)
        default:
            return
        }
        guard port(id, at: end) else { return }
        try tunnelReceived(frame, port: id, at: end)
    }

    mutating func tunnelReceived(_ frame: Frame, port id: UInt32, at end: End) throws {
        switch self[end].ports[id]!.machine.tunnelReceived(frame) {
        case .succeeded(let action):
            try perform(action, port: id, at: end)
        case .ignored:
            break
        case .streamError(let violation, let action):
            try require(forged, "\(end): honest peers broke a relay rule on port \(id): \(violation)")
            try perform(action, port: id, at: end)
        case .sessionError(let violation):
            try require(forged, "\(end): honest peers broke a session rule on port \(id): \(violation)")
            try goAway(end, .protocolError)
        }
    }

    // MARK: Performing actions, as StreamRelay does

    mutating func perform(_ action: StreamPortAction, port id: UInt32, at end: End) throws {
        if action != .none { trace?("  \(end) port \(id): \(action)") }
        switch action {
        case .none:
            break
        case .sendHeld:
            try sendHeld(id, at: end)
        case .resume:
            try sendHeld(id, at: end)
            readIfAllowed(id, at: end)
        case .writeToSocket(let bytes):
            try writeToSocket(bytes, port: id, at: end)
        case .reserveBuffer(let n):
            if !reserveBuffer(n, at: end) {
                self[end].counts.bufferRefusals += 1
                try perform(self[end].ports[id]!.machine.bufferReserveFailed(), port: id, at: end)
            }
        case .grant(let increment):
            // WINDOW 0 is a protocol error (§6.3): the seed `relay-consume-before-data` once caught it.
            try require(increment > 0, "\(end) port \(id) granted a zero increment")
            self[end].counts.grants += 1
            try relaySend(.window(.init(portID: id, increment: increment)), port: id, from: end)
        case .sendFinished:
            try relaySend(.finished(.init(portID: id)), port: id, from: end)
        case .shutdownOutput:
            let p = self[end].ports[id]!
            try require(p.socket == .open && !p.outputShut, "\(end) port \(id) shut an output it does not have")
            self[end].ports[id]!.outputShut = true
            self[end].counts.halfCloses += 1
            try checkReceivedEverything(id, at: end)
        case .replay(let frames, let release):
            self[end].buffered -= release
            self[end].counts.replays += 1
            for frame in frames { try tunnelReceived(frame, port: id, at: end) }
        case .closeSocket(let how):
            try closeSocket(how, port: id, at: end)
        case .end(let ending):
            try endPort(ending, port: id, at: end)
        }
    }

    /// StreamRelay.sendHeld: DATA while credit lasts and the tunnel takes it.
    mutating func sendHeld(_ id: UInt32, at end: End) throws {
        guard let session = self[end].established else { return }
        let maxPayload = min(Int(session.peerMaxPayload) - Frame.Data.prefixLength, 1 << 20)
        for _ in 0..<100_000 {
            let writable = self[end].writable && !self[end].closed
            switch self[end].ports[id]!.machine.nextOutbound(tunnelWritable: writable, maxPayload: maxPayload) {
            case .data(let slice):
                try require(
                    slice.readableBytes > 0 && slice.readableBytes <= maxPayload, "\(end) port \(id) sent DATA of \(slice.readableBytes)")
                try relaySend(.data(.init(portID: id, bytes: slice)), port: id, from: end)
            case .waitForTunnel:
                self[end].ports[id]!.blocked = true
                self[end].counts.waitsForTunnel += 1
                return
            case .idle:
                return
            case .then(let action):
                if self[end].ports[id]!.socket == .gone { self[end].counts.drains += 1 }
                return try perform(action, port: id, at: end)
            }
        }
        throw SessionFuzzViolation(description: "\(end) port \(id): nextOutbound never stops")
    }

    /// StreamRelay.readIfAllowed: with autoRead off, the socket is read only when asked.
    mutating func readIfAllowed(_ id: UInt32, at end: End) {
        guard self[end].ports[id]!.socket == .open else { return }
        switch self[end].ports[id]!.machine.readDecision(tunnelWritable: self[end].writable && !self[end].closed) {
        case .read: self[end].ports[id]!.readPending = true
        case .waitForTunnel: self[end].ports[id]!.blocked = true
        case .none: break
        }
    }

    mutating func reserveBuffer(_ n: Int, at end: End) -> Bool {
        guard self[end].buffered + n <= self[end].settings.maxBufferedBytes else { return false }
        self[end].buffered += n
        return true
    }

    /// StreamRelay.write: the budget first, then the socket; and the bytes must be the peer's.
    mutating func writeToSocket(_ bytes: ByteBuffer, port id: UInt32, at end: End) throws {
        let n = bytes.readableBytes
        guard reserveBuffer(n, at: end) else {
            self[end].counts.bufferRefusals += 1
            return try perform(self[end].ports[id]!.machine.bufferReserveFailed(), port: id, at: end)
        }
        let p = self[end].ports[id]!
        try require(p.socket == .open && !p.outputShut, "\(end) port \(id) wrote to a socket it does not have (\(p.socket))")
        if !forged {
            let from = p.writtenCount
            for (i, byte) in bytes.readableBytesView.enumerated() where byte != Self.content(end.peer, id, from + i) {
                throw SessionFuzzViolation(
                    description: "\(end) port \(id) wrote byte \(from + i) of the peer's stream wrong: \(byte), "
                        + "not \(Self.content(end.peer, id, from + i))")
            }
        }
        self[end].ports[id]!.writtenCount += n
        self[end].ports[id]!.writes.append(n)
    }

    mutating func closeSocket(_ how: StreamPortAction.SocketClose, port id: UInt32, at end: End) throws {
        guard self[end].ports[id]!.socket == .open else { return }
        if how == .afterWrites && !self[end].ports[id]!.writes.isEmpty {
            self[end].ports[id]!.closingAfterWrites = true
        } else {
            try dropSocket(id, at: end)
        }
    }

    /// The socket closes: pending writes fail, then channelInactive.
    mutating func dropSocket(_ id: UInt32, at end: End) throws {
        self[end].ports[id]!.socket = .gone
        self[end].ports[id]!.readPending = false
        while !self[end].ports[id]!.writes.isEmpty {
            let n = self[end].ports[id]!.writes.removeFirst()
            self[end].buffered -= n
            try perform(self[end].ports[id]!.machine.socketWriteCompleted(n, succeeded: false), port: id, at: end)
        }
        try perform(self[end].ports[id]!.machine.socketClosed(), port: id, at: end)
    }

    /// StreamRelay.end: the last frame, the budget back, unregister, then the socket.
    mutating func endPort(_ ending: StreamPortAction.Ending, port id: UInt32, at end: End) throws {
        switch ending.lastFrame {
        case .none: break
        case .finished: try relaySend(.finished(.init(portID: id)), port: id, from: end)
        case .reset(let code): try relaySend(.reset(.init(portID: id, code: code)), port: id, from: end)
        }
        self[end].buffered -= ending.releaseBuffer
        self[end].ports[id]!.ended = ending
        self[end].ports[id]!.blocked = false
        switch ending.reason {
        case .closed:
            self[end].counts.closedBothWays += 1
            try checkReceivedEverything(id, at: end)
        case .closedByRequest: self[end].counts.closedByRequest += 1
        case .resetByPeer: self[end].counts.resetsByPeer += 1
        default: break
        }
        try closeSocket(ending.socket, port: id, at: end)
    }

    /// Writes a relay frame on `end`'s channel; the session drops it once it ended (TunnelSession.send).
    mutating func relaySend(_ frame: Frame, port id: UInt32, from end: End) throws {
        guard !self[end].closed else { return }
        let p = self[end].ports[id]!
        try require(p.ended == nil, "\(end) sent \(frame.name) on port \(id) after the port ended")
        switch frame {
        case .data:
            try require(!p.sentFinished, "\(end) sent DATA on port \(id) after its FINISHED")
        case .finished:
            try require(!p.sentFinished, "\(end) sent FINISHED twice on port \(id)")
            // FINISHED comes after every byte the socket read (§6.4).
            try require(
                p.machine.bytesToTunnel == UInt64(p.readCount) && p.machine.heldBytes == 0,
                "\(end) sent FINISHED on port \(id) after \(p.machine.bytesToTunnel) of the \(p.readCount) bytes its socket read")
            self[end].ports[id]!.sentFinished = true
        default:
            break
        }
        try write(frame, from: end)
    }

    /// The peer finished its direction: every byte its socket read was written to ours, in order.
    func checkReceivedEverything(_ id: UInt32, at end: End) throws {
        guard !forged else { return }
        let written = self[end].ports[id]!.writtenCount
        let read = self[end.peer].ports[id]?.readCount ?? 0
        try require(written == read, "\(end) port \(id) saw FINISHED after \(written) of the \(read) bytes the peer's socket read")
    }

    // MARK: Invariants

    /// What holds at each end whatever the peer sends: the budget counts exactly the bytes kept
    /// before a socket joined and the socket writes not completed; no port holds bytes it could
    /// send; a port with credit and room reads its socket.
    func checkRelays() throws {
        for end in End.allCases {
            let state = self[end]
            var kept = 0
            for (id, p) in state.ports {
                kept += p.machine.earlyBufferedBytes + p.writes.reduce(0, +)
                guard !p.released, !state.closed else { continue }
                let m = p.machine
                let writable = state.writable
                try require(
                    m.heldBytes == 0 || m.sendWindow.credit == 0 || !writable,
                    "\(end) port \(id) holds \(m.heldBytes) bytes with \(m.sendWindow.credit) credit and a writable tunnel")
                if m.phase == .joined && p.socket == .open && !p.inputClosed && !m.halves.sentFin && m.heldBytes == 0
                    && m.sendWindow.credit > 0
                {
                    try require(
                        p.readPending || p.blocked, "\(end) port \(id) has credit but neither reads its socket nor waits for the tunnel")
                }
            }
            try require(
                state.buffered == kept && state.buffered >= 0 && state.buffered <= state.settings.maxBufferedBytes,
                "\(end)'s buffer budget holds \(state.buffered) bytes, its ports \(kept)")
        }
    }

    /// Window accounting of every open port direction between honest ends (docs/protocol.md §6.3): the
    /// sender's credit, the bytes in flight, the bytes the receiver keeps or writes to its socket and
    /// the grants in flight never add up to more than the window; nor does the direction stall: a
    /// sender without credit has data in flight, a grant coming, or a receiver holding bytes whose
    /// writes will grant more. And once the connection is quiet, a RESET or FINISHED one end sent has
    /// reached the other.
    func checkFlowControl() throws {
        for sender in End.allCases {
            let receiver = sender.peer
            guard let session = self[sender].established, !self[sender].closed, !self[receiver].closed else { continue }
            for (id, p) in self[sender].ports where !p.released && !p.machine.halves.sentFin {
                let q = self[receiver].ports[id]
                if q?.released == true { continue }
                var inFlight = 0
                for case (.data(let m), _) in self[sender].outbox where m.portID == id { inFlight += m.bytes.readableBytes }
                var granting = 0
                for case (.window(let m), _) in self[receiver].outbox where m.portID == id { granting += Int(m.increment) }
                let buffered = (q?.machine.receiveWindow.buffered ?? 0) + (q?.machine.earlyBufferedBytes ?? 0)
                let credit = p.machine.sendWindow.credit
                try require(
                    credit + inFlight + buffered + granting <= Int(session.peerInitialWindow),
                    "port \(id) \(sender)→\(receiver): credit \(credit) + in flight \(inFlight) + buffered \(buffered) "
                        + "+ granting \(granting) exceed the window \(session.peerInitialWindow)")
                try require(
                    credit > 0 || inFlight > 0 || granting > 0 || buffered > 0,
                    "port \(id) \(sender)→\(receiver) stalls: no credit, nothing in flight, nothing buffered to write")
            }
            guard self[sender].outbox.isEmpty && self[receiver].outbox.isEmpty else { continue }
            for (id, p) in self[sender].ports {
                guard let q = self[receiver].ports[id], q.machine.phase != .released, q.machine.phase != .awaitingSocket else {
                    continue
                }
                if case .reset(_)? = p.ended?.lastFrame {
                    throw SessionFuzzViolation(description: "port \(id): \(sender)'s RESET arrived but \(receiver)'s port goes on")
                }
                try require(
                    !p.sentFinished || q.machine.halves.receivedFin,
                    "port \(id): \(sender)'s FINISHED arrived but \(receiver)'s port did not take it")
            }
        }
    }
}
