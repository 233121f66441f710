import NIOCore
import PosternCore
import PosternWire

// The session fuzz driver (docs/protocol.md §4, §6.3, §6.4), shared by the libFuzzer target
// (tools/fuzz, where this folder is the `SessionFuzz` module through a symlink) and the unit tests
// (PosternCoreTests, which replay the seed corpus and every crash ever found): both run this very code.
//
// The input is a script run against the real `ServerSessionStateMachine` and
// `MediatorSessionStateMachine`, joined the way `TunnelSession` joins them: `.send` frames queue on a
// connection, and the script decides when they arrive, when time passes, what the transports report,
// which bytes fail to decode, and which forged frames an attacker slips in. Above the machines, each
// end runs the per-port relay rules on the frames delivered (SessionFuzzRelay.swift).
//
// Script: byte 0 picks the settings (`SessionFuzzSettings.init(_:)`); then one command per byte,
// `byte & 0x1f` (26 and up mean `byte & 0x0f`). Relay commands name a port with a byte (`PortRef`:
// bit 0 the end, bits 1-2 the port, bit 3 a read in two buffers); they drive the real
// `StreamPortStateMachine` of that port at that end (SessionFuzzRelay.swift):
//
//   0 / 1  inject the frame that follows (whole, header included) to the server / the mediator;
//          the script ends if no valid frame follows
//   2      advance the clock by the next u16 ms, tick both
//   3      advance the clock to the earlier deadline, tick both
//   4      start the mediator (it says HELLO)
//   5 / 6  deliver one queued frame server→mediator / mediator→server
//   7      deliver queued frames both ways until none is left
//   8 / 9  server / mediator goAway, code from the next byte
//   10     the socket read bytes (if the relay asked it to read): port byte, then the length
//   11     the socket's pending writes complete: port byte, then how many (0: all)
//   12     the socket reached end of input (port byte)
//   13     the socket failed: ECONNRESET (port byte)
//   14     tick both without moving the clock
//   15     run the clock: eight rounds of "advance to the earlier deadline, tick, deliver all"
//   16     the server's transport is ready, facts from the next byte (`serverFacts(_:)`)
//   17     the mediator's transport is ready, facts from the next byte (`mediatorFacts(_:)`)
//   18 / 19  the server's / the mediator's decoder failed, the error picked by the next byte
//   20     start the server again (it started when the harness was made, as on accept)
//   21     the socket joined (port byte): frames kept before it are replayed
//   22     the socket closed (port byte): channelInactive, its pending writes failed
//   23     the tunnel's writability: next byte, bit 0 the end, bit 1 writable
//   24     the server closes the port (CLOSE, §5.5): port byte, its end bit ignored
//   25     the port's owner resets it (port byte)
//
// Like the handler, the harness gives an end its transport's facts before it first reads a frame
// from the connection if the script did not (TLS finishes before data flows); a forged frame is
// injected without that, so it may arrive before the transport is ready. An end's tunnel that was
// made unwritable becomes writable again once everything it wrote was read (the water marks).
//
// A script runs at most `budget` commands (command 15 counts eight): past that, long runs of
// keepalive rounds only slow the fuzzer down.
//
// Invariants checked after every command (a violation is thrown; the fuzz target traps on it):
//   - a machine that said `.close` (or was told goAway) returns no action ever after; `.close` is the
//     last action of its batch; its `nextDeadline` is nil and it is not established;
//   - `.established` comes at most once per machine, and `isEstablished` agrees with it;
//   - a started machine that is not closed has a `nextDeadline`, and after `tick(now:)` it lies after
//     `now` (else the handler's timer would spin);
//   - every frame a machine or relay sends encodes and decodes back equal under the peer's limit;
//   - a decode failure ends an open session: REFUSED before it is established, GOAWAY after;
//   - the server never establishes a session its transport's certificate names do not allow, and
//     never one whose channel binding differs from the mediator's, unless a forged frame came;
//   - two honest ends that both established hold the same keys, one per direction;
//   - at each end, the session's buffer budget counts exactly the bytes its ports keep before their
//     sockets join and their socket writes not yet completed, within the limit; no port holds bytes
//     it has credit and a writable tunnel for; a port with credit reads its socket or waits for the
//     tunnel; no port sends after it ended, DATA after its FINISHED, or FINISHED before every byte
//     its socket read; no port writes to a socket it does not have, or sends WINDOW 0;
//   - while no forged frame was injected, the two honest ends never break flow control or FIN/RST
//     rules against each other: no more in flight than the window and no stalled direction; every
//     byte written to a socket is the peer's socket's next byte, and FINISHED arrives after all of
//     them; a RESET or FINISHED, once delivered, ended or half-closed the other end's port
//     (SessionFuzzRelay.swift).

/// An invariant the machines broke, with the sentence that says which.
public struct SessionFuzzViolation: Error, CustomStringConvertible {
    public var description: String
}

/// Throws unless `condition` holds.
func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw SessionFuzzViolation(description: message()) }
}

/// The fixed handshake inputs of docs/protocol.md §8, so its vectors are valid frames in a script.
enum SessionFuzzInputs {
    static let secret = Array("correct horse battery staple".utf8)
    static let mediatorNonce = Array(UInt8(0x00)...UInt8(0x1f))
    static let serverNonce = Array(UInt8(0xa0)...UInt8(0xbf))
    static let sessionID: UInt64 = 0x0123_4567_89ab_cdef
    static let serverKey = [UInt8](repeating: 0xA5, count: 32)
    static let interceptorKey = [UInt8](repeating: 0x5A, count: 32)
    /// Largest forged frame the script may carry.
    static let injectLimit: UInt32 = 64 << 10
    /// What the decoder may fail with, picked by a script byte.
    static let wireErrors: [WireError] = [
        .frameTooLarge(length: 1 << 30, limit: 65_536), .unknownType(0x7f), .nonZeroFlags(type: 1, flags: 2),
        .truncated(frame: "HELLO"), .trailingBytes(frame: "PING", count: 3), .invalidValue(field: "window", value: "0"),
        .badMagic,
    ]
}

/// The settings of both ends, chosen by the script's first byte: bits 0-2 the server's receive
/// window, bits 3-5 the mediator's, bits 6-7 the server's timing (which governs both ends).
public struct SessionFuzzSettings {
    var server = SessionSettings()
    var mediator = SessionSettings()
    /// What each transport reports unless the script says otherwise: no channel binding (plain TCP),
    /// the same key, or another key at the mediator (a TLS interceptor).
    var serverFacts = TransportFacts.plain
    var mediatorFacts = TransportFacts.plain

    /// Tiny windows reach the edges of `ReceiveWindow` (a quarter of 3 bytes is 0).
    static let windows: [UInt32] = [1, 2, 3, 4, 7, 100, 1000, 65_536]
    /// (keepalive, dead timeout, handshake timeout): the defaults, all equal, dead before keepalive.
    static let timings: [(TimeAmount, TimeAmount, TimeAmount)] = [
        (.seconds(10), .seconds(30), .seconds(10)),
        (.milliseconds(1), .milliseconds(1), .milliseconds(1)),
        (.milliseconds(50), .milliseconds(20), .seconds(1)),
        (.seconds(1), .milliseconds(1500), .milliseconds(300)),
    ]

    public init(_ config: UInt8) {
        server.initialWindow = Self.windows[Int(config & 7)]
        mediator.initialWindow = Self.windows[Int(config >> 3 & 7)]
        (server.keepaliveInterval, server.deadTimeout, server.handshakeTimeout) = Self.timings[Int(config >> 6)]
        server.maxPayload = 65_536
        mediator.maxPayload = 32_768
        // Small enough that two ports with big windows and slow sockets pass it.
        server.maxBufferedBytes = 100_000
        mediator.maxBufferedBytes = 100_000
        mediator.handshakeTimeout = .seconds(8)
        switch (config ^ config >> 5) % 3 {
        case 1:
            serverFacts.channelBinding = SessionFuzzInputs.serverKey
            mediatorFacts.channelBinding = SessionFuzzInputs.serverKey
        case 2:
            serverFacts.channelBinding = SessionFuzzInputs.serverKey
            mediatorFacts.channelBinding = SessionFuzzInputs.interceptorKey
        default:
            break
        }
    }

    /// Command 16's byte: bits 0-1 the certificate's names (none, the mediator's, another's, an empty
    /// list), bit 2 whether one is required, bits 3-4 the binding (configured, none, the server key,
    /// the interceptor's).
    func serverFacts(_ byte: UInt8) -> TransportFacts {
        let names: [[String]?] = [nil, ["acme"], ["camed"], []]
        return TransportFacts(
            channelBinding: Self.binding(byte >> 3, configured: serverFacts.channelBinding),
            peerCertificateNames: names[Int(byte & 3)], requiresClientCertificate: byte & 4 != 0)
    }

    /// Command 17's byte: bits 0-1 the binding the mediator saw (configured, none, the server key,
    /// the interceptor's).
    func mediatorFacts(_ byte: UInt8) -> TransportFacts {
        TransportFacts(channelBinding: Self.binding(byte, configured: mediatorFacts.channelBinding))
    }

    private static func binding(_ bits: UInt8, configured: [UInt8]) -> [UInt8] {
        [configured, [], SessionFuzzInputs.serverKey, SessionFuzzInputs.interceptorKey][Int(bits & 3)]
    }
}

/// The unread part of the input.
struct SessionFuzzScript {
    var bytes: ByteBuffer

    mutating func byte() -> UInt8? { bytes.readInteger() }
    mutating func u16() -> UInt16? { bytes.readInteger() }

    /// A whole frame at the start of the rest; nil when none is there.
    mutating func frame() -> Frame? {
        var decoder = FrameDecoder(maxPayload: SessionFuzzInputs.injectLimit)
        return try? decoder.next(&bytes)
    }
}

enum End: Int, CaseIterable {
    case server = 0
    case mediator = 1
    var peer: End { self == .server ? .mediator : .server }
}

/// What the harness knows of one end of the connection, beyond its machine.
struct EndState {
    let settings: SessionSettings
    var started = false
    var closed = false
    var established: EstablishedSession?
    /// The facts this end's machine was given first (the only ones that count).
    var facts: TransportFacts?
    /// Frames written on this end's channel, not yet read by the peer, and whether each fits the
    /// peer's decoder limit.
    var outbox: [(frame: Frame, fits: Bool)] = []
    var ports: [UInt32: RelayPort] = [:]
    /// The tunnel channel's writability, as the ports see it.
    var writable = true
    /// The session's buffer budget in use (`TunnelSession.bufferedBytes`).
    var buffered = 0
    var counts = RelayCounts()

    init(settings: SessionSettings) { self.settings = settings }
}

/// Runs one script. Everything runs on the caller's thread, with a clock of its own.
public struct SessionFuzzHarness {
    var server: ServerSessionStateMachine
    var mediator: MediatorSessionStateMachine
    var now = NIODeadline.uptimeNanoseconds(5_000_000_000_000)
    let settings: SessionFuzzSettings
    var ends: [EndState]
    /// A forged frame reached a machine: from then on the ends need not agree on flow control.
    var forged = false
    /// Prints every command and action, for reading a crash's script.
    let trace: ((String) -> Void)?

    static let budget = 256

    /// Runs `script` (the fuzzer's input) to its end; throws the first invariant it finds broken.
    @discardableResult
    public static func run(_ script: [UInt8], trace: ((String) -> Void)? = nil) throws -> SessionFuzzHarness {
        var script = SessionFuzzScript(bytes: ByteBuffer(bytes: script))
        guard let config = script.byte() else { return SessionFuzzHarness(settings: SessionFuzzSettings(0), trace: trace) }
        var harness = SessionFuzzHarness(settings: SessionFuzzSettings(config), trace: trace)
        try harness.run(&script)
        return harness
    }

    init(settings: SessionFuzzSettings, trace: ((String) -> Void)?) {
        self.settings = settings
        self.trace = trace
        server = ServerSessionStateMachine(
            settings: settings.server, sessionID: SessionFuzzInputs.sessionID, serverNonce: SessionFuzzInputs.serverNonce,
            secretFor: { $0 == "acme" ? SessionFuzzInputs.secret : nil })
        mediator = MediatorSessionStateMachine(
            name: "acme", secret: SessionFuzzInputs.secret, nonce: SessionFuzzInputs.mediatorNonce,
            softwareVersion: "fuzz-mediator", settings: settings.mediator)
        ends = [EndState(settings: settings.server), EndState(settings: settings.mediator)]
        // The server's handshake timer runs from accept.
        let actions = server.start(now: now)
        precondition(actions.isEmpty, "the server said something on start: \(actions)")
        ends[End.server.rawValue].started = true
    }

    subscript(end: End) -> EndState {
        get { ends[end.rawValue] }
        _modify { yield &ends[end.rawValue] }
    }

    /// Both ends established, each with the session the other agreed to.
    public var bothEstablished: Bool { self[.server].established != nil && self[.mediator].established != nil }
    /// WINDOW frames both relays granted.
    public var windowGrants: Int { relayCounts.grants }
    /// What both relays did.
    public var relayCounts: RelayCounts {
        let (s, m) = (self[.server].counts, self[.mediator].counts)
        return RelayCounts(
            grants: s.grants + m.grants, replays: s.replays + m.replays, bufferRefusals: s.bufferRefusals + m.bufferRefusals,
            halfCloses: s.halfCloses + m.halfCloses, closedBothWays: s.closedBothWays + m.closedBothWays,
            closedByRequest: s.closedByRequest + m.closedByRequest, resetsByPeer: s.resetsByPeer + m.resetsByPeer,
            waitsForTunnel: s.waitsForTunnel + m.waitsForTunnel, drains: s.drains + m.drains, lateJoins: s.lateJoins + m.lateJoins)
    }

    mutating func run(_ script: inout SessionFuzzScript) throws {
        var spent = 0
        while spent < Self.budget, var command = script.byte() {
            command &= 0x1f
            if command > 25 { command &= 0x0f }
            spent += command == 15 ? 8 : 1
            trace?("command \(command) at +\((now.uptimeNanoseconds - 5_000_000_000_000) / 1_000_000) ms")
            switch command {
            case 0, 1:
                guard let frame = script.frame() else { return }
                forged = true
                try receive(frame, at: command == 0 ? .server : .mediator)
            case 2:
                guard let ms = script.u16() else { return }
                now = now + .milliseconds(Int64(ms))
                try tickBoth()
            case 3:
                advanceToDeadline()
                try tickBoth()
            case 4:
                try startMediator()
            case 5:
                try deliverOne(from: .server)
            case 6:
                try deliverOne(from: .mediator)
            case 7:
                try deliverAll()
            case 8, 9:
                guard let code = script.byte() else { return }
                try goAway(command == 8 ? .server : .mediator, ErrorCode(rawValue: UInt16(code)))
            case 10:
                guard let ref = script.byte(), let length = script.byte() else { return }
                try socketRead(PortRef(ref), length: Self.length(length))
            case 11:
                guard let ref = script.byte(), let count = script.byte() else { return }
                try socketWritesCompleted(PortRef(ref), count: Int(count))
            case 12:
                guard let ref = script.byte() else { return }
                try socketInputClosed(PortRef(ref))
            case 13:
                guard let ref = script.byte() else { return }
                try socketFailed(PortRef(ref))
            case 14:
                try tickBoth()
            case 15:
                for _ in 0..<8 {
                    advanceToDeadline()
                    try tickBoth()
                    try deliverAll()
                }
            case 16, 17:
                guard let byte = script.byte() else { return }
                let end: End = command == 16 ? .server : .mediator
                try transportReady(end == .server ? settings.serverFacts(byte) : settings.mediatorFacts(byte), at: end)
            case 18, 19:
                guard let byte = script.byte() else { return }
                let errors = SessionFuzzInputs.wireErrors
                try decodeFailed(errors[Int(byte) % errors.count], at: command == 18 ? .server : .mediator)
            case 20:
                try require(server.start(now: now).isEmpty, "the server acted on a second start")
            case 21, 22, 24, 25:
                guard let byte = script.byte() else { return }
                let ref = PortRef(byte)
                switch command {
                case 21: try socketJoined(ref)
                case 22: try socketClosed(ref)
                case 24: try closeByRequest(ref.portID)
                default: try resetByOwner(ref)
                }
            default:
                guard let byte = script.byte() else { return }
                try setWritable(byte & 2 != 0, at: byte & 1 == 0 ? .server : .mediator)
            }
            try checkRelays()
            if !forged { try checkFlowControl() }
        }
    }

    /// 0-127 as is, then steps of 512 up to 64 KiB: small lengths for tiny windows, big ones for large.
    static func length(_ byte: UInt8) -> Int { byte < 128 ? Int(byte) : (Int(byte) - 127) * 512 }

    // MARK: Driving the machines

    mutating func receive(_ frame: Frame, at end: End) throws {
        switch end {
        case .server: try perform(server.receive(frame, now: now), at: .server)
        case .mediator: try perform(mediator.receive(frame, now: now), at: .mediator)
        }
    }

    mutating func transportReady(_ facts: TransportFacts, at end: End) throws {
        if self[end].facts == nil { self[end].facts = facts }
        let actions: [SessionAction]
        switch end {
        case .server: actions = server.transportReady(facts, now: now)
        case .mediator: actions = mediator.transportReady(facts, now: now)
        }
        try require(actions.isEmpty, "\(end) acted on transportReady: \(actions)")
        try perform(actions, at: end)
    }

    mutating func decodeFailed(_ error: WireError, at end: End) throws {
        let wasOpen = self[end].started && !self[end].closed
        let wasEstablished = isEstablished(end)
        let actions: [SessionAction]
        switch end {
        case .server: actions = server.decodeFailed(error, now: now)
        case .mediator: actions = mediator.decodeFailed(error, now: now)
        }
        if wasOpen {
            let expected: Frame =
                wasEstablished
                ? .goAway(.init(code: .protocolError, message: error.description))
                : .refused(.init(code: .protocolError, message: error.description))
            try require(
                actions == [.send(expected), .close(SessionEnd(code: .protocolError, message: error.description))],
                "\(end) answered a decode failure (established: \(wasEstablished)) with \(actions)")
        }
        try perform(actions, at: end)
    }

    mutating func startMediator() throws {
        let wasIdle = !self[.mediator].started && !self[.mediator].closed
        let actions = mediator.start(now: now)
        try require(wasIdle || actions.isEmpty, "start acted on a mediator that was not idle")
        if wasIdle {
            try require(!actions.isEmpty, "an idle mediator did not say HELLO on start")
            self[.mediator].started = true
        }
        try perform(actions, at: .mediator)
    }

    mutating func tickBoth() throws {
        try perform(server.tick(now: now), at: .server)
        try perform(mediator.tick(now: now), at: .mediator)
        for end in End.allCases where !self[end].closed {
            if let next = nextDeadline(end) {
                try require(next > now, "\(end) asks to be ticked at \(next) right after a tick at \(now)")
            }
        }
    }

    mutating func goAway(_ end: End, _ code: ErrorCode) throws {
        switch end {
        case .server: try perform(server.goAway(code, "fuzz goAway"), at: .server)
        case .mediator: try perform(mediator.goAway(code, "fuzz goAway"), at: .mediator)
        }
        // goAway ends the session in every state, with or without a `.close` (an idle mediator).
        self[end].closed = true
        try closePorts(at: end)
        try check(end)
    }

    /// The clock moves to the earlier of the two deadlines, if that is ahead.
    mutating func advanceToDeadline() {
        let deadlines = End.allCases.compactMap { nextDeadline($0) }
        if let next = deadlines.min(), next > now { now = next }
    }

    func nextDeadline(_ end: End) -> NIODeadline? {
        end == .server ? server.nextDeadline : mediator.nextDeadline
    }

    func isEstablished(_ end: End) -> Bool {
        end == .server ? server.isEstablished : mediator.isEstablished
    }

    /// What the handler does with a machine's actions, and the checks on them.
    mutating func perform(_ actions: [SessionAction], at end: End) throws {
        if !actions.isEmpty { trace?("  \(end): \(actions)") }
        try require(!self[end].closed || actions.isEmpty, "\(end) acted after it closed: \(actions)")
        for (i, action) in actions.enumerated() {
            switch action {
            case .send(let frame):
                try write(frame, from: end)
            case .established(let session):
                try require(self[end].established == nil, "\(end) established twice")
                try require(session.name == "acme", "\(end) established a session for '\(session.name)'")
                // Between honest ends, each learns the other's real window and limit.
                let peer = self[end.peer].settings
                try require(
                    forged || (session.peerInitialWindow == peer.initialWindow && session.peerMaxPayload == peer.maxPayload),
                    "\(end) established with the wrong peer window or limit: \(session)")
                self[end].established = session
                try checkEstablished(end)
            case .deliver(let frame):
                try require(isEstablished(end), "\(end) delivered \(frame.name) outside an established session")
                try relayReceive(frame, at: end)
            case .close:
                try require(i == actions.count - 1, "\(end) acted after .close in one batch: \(actions)")
                self[end].closed = true
            }
        }
        if self[end].closed { try closePorts(at: end) }
        try check(end)
    }

    /// What an established session must have been entitled to.
    func checkEstablished(_ end: End) throws {
        guard let session = self[end].established else { return }
        try require(
            session.keys.sending.count == SessionKeys.length && session.keys.receiving.count == SessionKeys.length,
            "\(end) derived keys of the wrong length")
        try require(session.keys.sending != session.keys.receiving, "\(end) uses one key for both directions")
        if end == .server {
            let facts = self[.server].facts
            try require(facts != nil, "the server established before its transport was ready")
            if let names = facts?.peerCertificateNames {
                try require(names.contains(session.name), "the server accepted a certificate for \(names) as '\(session.name)'")
            } else {
                try require(facts?.requiresClientCertificate != true, "the server accepted a mediator without the required certificate")
            }
            try require(
                forged || facts?.channelBinding == self[.mediator].facts?.channelBinding,
                "the server established with a mediator that saw another server key")
        }
        if let server = self[.server].established, let mediator = self[.mediator].established, !forged {
            try require(server.sessionID == mediator.sessionID, "the ends disagree on the session id")
            try require(
                server.keys.sending == mediator.keys.receiving && server.keys.receiving == mediator.keys.sending,
                "the two ends derived different keys")
        }
    }

    func check(_ end: End) throws {
        let state = self[end]
        if state.closed {
            try require(!isEstablished(end), "\(end) closed but still established")
            try require(nextDeadline(end) == nil, "\(end) closed but still has a deadline")
        } else {
            try require(isEstablished(end) == (state.established != nil), "\(end): isEstablished disagrees with its actions")
            if state.started {
                try require(nextDeadline(end) != nil, "\(end) is open but has no deadline")
            } else {
                try require(nextDeadline(end) == nil, "\(end) has a deadline before it started")
            }
        }
    }

    // MARK: The connection

    /// Writes a frame on `end`'s channel; it must come out of a decoder unchanged, and fit the peer's
    /// limit unless a forged HELLO or WELCOME told `end` a bigger one.
    mutating func write(_ frame: Frame, from end: End) throws {
        var bytes = ByteBuffer()
        bytes.writeFrame(frame)
        let length = bytes.readableBytes - Frame.headerLength
        var decoder = FrameDecoder(maxPayload: .max)
        let decoded: Frame?
        do {
            decoded = try decoder.next(&bytes)
        } catch {
            throw SessionFuzzViolation(description: "\(end) sent a \(frame.name) that does not decode: \(error)")
        }
        try require(decoded == frame && bytes.readableBytes == 0, "\(end)'s \(frame.name) changed on the wire")
        let fits = length <= Int(self[end.peer].settings.maxPayload)
        try require(fits || forged, "\(end) sent a \(frame.name) of \(length) bytes, over its peer's limit")
        self[end].outbox.append((frame, fits))
    }

    /// The peer reads the next frame `end` wrote. A closed peer's channel is gone: it reads nothing.
    mutating func deliverOne(from end: End) throws {
        guard !self[end].outbox.isEmpty else { return }
        let (frame, fits) = self[end].outbox.removeFirst()
        // Everything written was read: the channel is writable again.
        if self[end].outbox.isEmpty { try setWritable(true, at: end) }
        let reader = end.peer
        guard !self[reader].closed else { return }
        // The transport finishes its own handshake before data flows.
        if self[reader].facts == nil {
            try transportReady(reader == .server ? settings.serverFacts : settings.mediatorFacts, at: reader)
        }
        guard fits else {
            // The reader's FrameDecoder throws frameTooLarge: a decode failure.
            return try decodeFailed(.frameTooLarge(length: .max, limit: self[reader].settings.maxPayload), at: reader)
        }
        try receive(frame, at: reader)
    }

    mutating func deliverAll() throws {
        var rounds = 0
        while !self[.server].outbox.isEmpty || !self[.mediator].outbox.isEmpty {
            try deliverOne(from: .server)
            try deliverOne(from: .mediator)
            rounds += 1
            // Machines answering each other forever is a bug, not a reason to hang the fuzzer.
            try require(rounds < 100_000, "frames never stop flowing")
        }
    }
}
