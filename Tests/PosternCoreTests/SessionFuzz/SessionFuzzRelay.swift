import NIOCore
import PosternCore
import PosternWire

// The per-port relay above the session machines in the fuzz driver (docs/protocol.md §6.3, §6.4):
// what `StreamRelay` does with the frames a session delivers, here with the pure pieces it is made of
// (`SendWindow`, `ReceiveWindow`, `StreamState`).
//
// Where the pure stream-port machine goes: when PosternCore has one (issue 7, item 1), `RelayPort`
// becomes that machine, and `sendData`, `consume`, `localEOF`, `reset` and `relayReceive` below feed it
// its inputs (socket read, socket drained, EOF, reset; DATA, WINDOW, FINISHED, RESET) and write the
// frames its actions send. The invariants of `checkFlowControl` stay as they are: they are about the
// two ends, not about how either keeps its books.

/// Which port a relay command means: bit 0 the end, bits 1-2 one of four port ids.
struct PortRef {
    var end: End
    var portID: UInt32
    init(_ byte: UInt8) {
        end = byte & 1 == 0 ? .server : .mediator
        portID = 1 + UInt32(byte >> 1 & 3)
    }
}

/// One relayed TCP port as one end's relay sees it.
struct RelayPort {
    var send: SendWindow
    var receive: ReceiveWindow
    var stream = StreamState()
}

extension SessionFuzzHarness {
    /// The end's port, created on first use the way CONNECT/ACCEPTED create one; nil before the
    /// session is established (no relay yet) or after it closed.
    mutating func port(_ id: UInt32, at end: End) -> RelayPort? {
        guard !self[end].closed, let session = self[end].established else { return nil }
        if let p = self[end].ports[id] { return p }
        let p = RelayPort(
            send: SendWindow(initial: session.peerInitialWindow), receive: ReceiveWindow(size: self[end].settings.initialWindow))
        self[end].ports[id] = p
        return p
    }

    mutating func sendData(_ ref: PortRef, length: Int) throws {
        guard var p = port(ref.portID, at: ref.end), let session = self[ref.end].established else { return }
        guard !p.stream.sentFin && !p.stream.isReset else { return }
        let n = min(length, p.send.credit, Int(session.peerMaxPayload) - Frame.Data.prefixLength)
        guard n > 0 else { return }
        p.send.consume(n)
        self[ref.end].ports[ref.portID] = p
        let bytes = ByteBuffer(repeating: UInt8(truncatingIfNeeded: n), count: n)
        try write(.data(.init(portID: ref.portID, bytes: bytes)), from: ref.end)
    }

    mutating func consume(_ ref: PortRef, length: Int) throws {
        guard var p = port(ref.portID, at: ref.end) else { return }
        let n = min(length, p.receive.buffered)
        let grant = p.receive.consumed(n)
        self[ref.end].ports[ref.portID] = p
        guard let grant, !p.stream.isReset else { return }
        // WINDOW 0 is a protocol error (§6.3): the seed `relay-consume-before-data` once caught it.
        try require(grant > 0, "ReceiveWindow granted a zero increment")
        self[ref.end].grants += 1
        try write(.window(.init(portID: ref.portID, increment: grant)), from: ref.end)
    }

    mutating func localEOF(_ ref: PortRef) throws {
        guard var p = port(ref.portID, at: ref.end), !p.stream.isReset else { return }
        let outcome = p.stream.apply(.localEOF)
        self[ref.end].ports[ref.portID] = p
        if outcome == .halfClosed || outcome == .closed {
            try write(.finished(.init(portID: ref.portID)), from: ref.end)
        }
    }

    mutating func reset(_ ref: PortRef) throws {
        guard var p = port(ref.portID, at: ref.end) else { return }
        let outcome = p.stream.apply(.reset)
        self[ref.end].ports[ref.portID] = p
        if outcome == .closed {
            try write(.reset(.init(portID: ref.portID, code: .connectionReset)), from: ref.end)
        }
    }

    /// A relay frame the machine delivered to `end`'s layer above.
    mutating func relayReceive(_ frame: Frame, at end: End) throws {
        switch frame {
        case .data(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }  // in flight across our RST
            guard !p.stream.receivedFin else { return try violation("DATA after FINISHED on port \(m.portID)", at: end) }
            do {
                try p.receive.received(m.bytes.readableBytes)
            } catch {
                return try violation("\(error)", at: end)
            }
            self[end].ports[m.portID] = p
        case .window(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }
            do {
                try p.send.grant(m.increment)
            } catch {
                return try violation("\(error)", at: end)
            }
            self[end].ports[m.portID] = p
        case .finished(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }
            let outcome = p.stream.apply(.remoteFin)
            self[end].ports[m.portID] = p
            if outcome == .duplicate { try violation("second FINISHED on port \(m.portID)", at: end) }
        case .reset(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }
            _ = p.stream.apply(.reset)
            self[end].ports[m.portID] = p
        default:
            break
        }
    }

    /// Window accounting of every open port direction between honest ends (docs/protocol.md §6.3): the
    /// sender's credit, the bytes in flight, the bytes buffered and the grants in flight never add up
    /// to more than the window; nor does the direction stall: a sender without credit has data in
    /// flight, a grant coming, or a receiver holding bytes whose consumption will grant more.
    func checkFlowControl() throws {
        for sender in End.allCases {
            let receiver = sender.peer
            guard let session = self[sender].established, !self[sender].closed, !self[receiver].closed else { continue }
            for (id, p) in self[sender].ports where !p.stream.sentFin && !p.stream.isReset {
                let q = self[receiver].ports[id]
                if q?.stream.isReset == true { continue }
                var inFlight = 0
                for case (.data(let m), _) in self[sender].outbox where m.portID == id { inFlight += m.bytes.readableBytes }
                var granting = 0
                for case (.window(let m), _) in self[receiver].outbox where m.portID == id { granting += Int(m.increment) }
                let buffered = q?.receive.buffered ?? 0
                let accounted = p.send.credit + inFlight + buffered + granting
                try require(
                    accounted <= Int(session.peerInitialWindow),
                    "port \(id) \(sender)→\(receiver): credit \(p.send.credit) + in flight \(inFlight) + buffered \(buffered) "
                        + "+ granting \(granting) exceed the window \(session.peerInitialWindow)")
                try require(
                    p.send.credit > 0 || inFlight > 0 || granting > 0 || buffered > 0,
                    "port \(id) \(sender)→\(receiver) stalls: no credit, nothing in flight, nothing buffered to consume")
            }
        }
    }

    /// The peer broke a relay rule. Between two honest ends that is a bug; after a forged frame it is
    /// what an attacker does, and the end's handler ends the session.
    mutating func violation(_ message: String, at end: End) throws {
        try require(forged, "\(end): honest peers broke a relay rule: \(message)")
        try goAway(end, .protocolError)
    }
}
