import NIOCore
import PosternCore
import PosternWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// libFuzzer target for the session state machines (docs/protocol.md §4, §6.3, §6.4). The input is a
// script run against a `ServerSessionStateMachine` and a `MediatorSessionStateMachine` joined the way
// the NIO handlers join them: `.send` frames queue on a connection, and the script decides when they
// arrive, when time passes, and which forged frames an attacker slips in. Above the machines, each end
// runs the per-port relay rules (`SendWindow`, `ReceiveWindow`, `StreamState`) on the frames delivered.
//
// Script: byte 0 picks the settings (`Settings.init(_:)`); then one command per byte, `byte & 0x0f`:
//
//   0 / 1  inject the frame that follows (whole, header included) to the server / the mediator;
//          the script ends if no valid frame follows
//   2      advance the clock by the next u16 ms, tick both
//   3      advance the clock to the earlier deadline, tick both
//   4      start the mediator (it says HELLO)
//   5 / 6  deliver one queued frame server→mediator / mediator→server
//   7      deliver queued frames both ways until none is left
//   8 / 9  server / mediator goAway, code from the next byte
//   10     send DATA: next byte picks end and port (`PortRef`), the byte after it the length
//   11     the local socket consumed bytes: end and port, then a length (may grant a WINDOW)
//   12     the local socket reached end of input: FINISHED (end and port byte)
//   13     reset the port: RESET (end and port byte)
//   14     tick both without moving the clock
//   15     run the clock: eight rounds of "advance to the earlier deadline, tick, deliver all"
//
// A script runs at most `Harness.budget` commands (command 15 counts eight): past that, long runs of
// keepalive rounds only slow the fuzzer down.
//
// Invariants checked after every command (a trap is a bug):
//   - a machine that said `.close` (or was told goAway) returns no action ever after; `.close` is the
//     last action of its batch; its `nextDeadline` is nil and it is not established;
//   - `.established` comes at most once per machine, and `isEstablished` agrees with it;
//   - a started machine that is not closed has a `nextDeadline`, and after `tick(now:)` it lies after
//     `now` (else the handler's timer would spin);
//   - every frame a machine or relay sends encodes and decodes back equal under the peer's limit;
//   - while no forged frame was injected, the two honest ends never break flow control or FIN/RST
//     rules against each other (no window overrun or overflow, no DATA or FINISHED after FINISHED),
//     and on every open direction of a port the sender's credit, the bytes in flight, the bytes
//     buffered and the grants in flight never add up to more than the window; nor does the
//     direction stall: a sender without credit has data in flight, a grant coming, or a receiver
//     holding bytes whose consumption will grant more.

let secret = Array("correct horse battery staple".utf8)
// The fixed handshake inputs of docs/protocol.md §8, so its vectors are valid frames in a script.
let mediatorNonce = Array(UInt8(0x00)...UInt8(0x1f))
let serverNonce = Array(UInt8(0xa0)...UInt8(0xbf))
let sessionID: UInt64 = 0x0123_4567_89ab_cdef
/// Largest forged frame the script may carry.
let injectLimit: UInt32 = 64 << 10
/// POSTERN_FUZZ_TRACE=1 prints every command and action: for reading a crash's script.
let tracing = getenv("POSTERN_FUZZ_TRACE") != nil

/// Unbuffered, so the trace is complete when a precondition stops the process.
func trace(_ line: String) { fputs(line + "\n", stderr) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var script = Script(bytes: ByteBuffer(bytes: UnsafeRawBufferPointer(start: start, count: count)))
    guard let config = script.byte() else { return 0 }
    var harness = Harness(settings: Settings(config))
    harness.run(&script)
    return 0
}

/// The settings of both ends, chosen by the script's first byte: bits 0-2 the server's receive
/// window, bits 3-5 the mediator's, bits 6-7 the server's timing (which governs both ends).
struct Settings {
    var server = SessionSettings()
    var mediator = SessionSettings()
    /// Channel binding (the TLS server key) each end mixes into the proofs: none (plain TCP), the
    /// same key, or another key at the mediator (a TLS interceptor).
    var serverBinding: [UInt8] = []
    var mediatorBinding: [UInt8] = []

    /// Tiny windows reach the edges of `ReceiveWindow` (a quarter of 3 bytes is 0).
    static let windows: [UInt32] = [1, 2, 3, 4, 7, 100, 1000, 65_536]
    /// (keepalive, dead timeout, handshake timeout): the defaults, all equal, dead before keepalive.
    static let timings: [(TimeAmount, TimeAmount, TimeAmount)] = [
        (.seconds(10), .seconds(30), .seconds(10)),
        (.milliseconds(1), .milliseconds(1), .milliseconds(1)),
        (.milliseconds(50), .milliseconds(20), .seconds(1)),
        (.seconds(1), .milliseconds(1500), .milliseconds(300)),
    ]

    init(_ config: UInt8) {
        server.initialWindow = Settings.windows[Int(config & 7)]
        mediator.initialWindow = Settings.windows[Int(config >> 3 & 7)]
        (server.keepaliveInterval, server.deadTimeout, server.handshakeTimeout) = Settings.timings[Int(config >> 6)]
        server.maxPayload = 65_536
        mediator.maxPayload = 32_768
        mediator.handshakeTimeout = .seconds(8)
        switch (config ^ config >> 5) % 3 {
        case 1:
            serverBinding = Array(repeating: 0xA5, count: 32)
            mediatorBinding = serverBinding
        case 2:
            serverBinding = Array(repeating: 0xA5, count: 32)
            mediatorBinding = Array(repeating: 0x5A, count: 32)
        default:
            break
        }
    }
}

/// The unread part of the input.
struct Script {
    var bytes: ByteBuffer

    mutating func byte() -> UInt8? { bytes.readInteger() }
    mutating func u16() -> UInt16? { bytes.readInteger() }

    /// A whole frame at the start of the rest; nil when none is there.
    mutating func frame() -> Frame? {
        var decoder = FrameDecoder(maxPayload: injectLimit)
        return try? decoder.next(&bytes)
    }
}

enum End: Int, CaseIterable {
    case server = 0
    case mediator = 1
    var peer: End { self == .server ? .mediator : .server }
}

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
struct Port {
    var send: SendWindow
    var receive: ReceiveWindow
    var stream = StreamState()
}

/// What the harness knows of one end of the connection, beyond its machine.
struct EndState {
    let settings: SessionSettings
    var started = false
    var closed = false
    var established: EstablishedSession?
    /// Frames written on this end's channel, not yet read by the peer, and whether each fits the
    /// peer's decoder limit.
    var outbox: [(frame: Frame, fits: Bool)] = []
    var ports: [UInt32: Port] = [:]

    init(settings: SessionSettings) { self.settings = settings }
}

struct Harness {
    var server: ServerSessionStateMachine
    var mediator: MediatorSessionStateMachine
    var now = NIODeadline.uptimeNanoseconds(5_000_000_000_000)
    var ends: [EndState]
    /// A forged frame reached a machine: from then on the ends need not agree on flow control.
    var forged = false

    init(settings: Settings) {
        server = ServerSessionStateMachine(
            settings: settings.server, sessionID: sessionID, serverNonce: serverNonce, channelBinding: settings.serverBinding,
            now: now)
        mediator = MediatorSessionStateMachine(
            name: "acme", secret: secret, nonce: mediatorNonce, softwareVersion: "fuzz-mediator", settings: settings.mediator)
        mediator.channelBinding = settings.mediatorBinding
        ends = [EndState(settings: settings.server), EndState(settings: settings.mediator)]
        ends[End.server.rawValue].started = true  // the server's handshake timer runs from accept
    }

    subscript(end: End) -> EndState {
        get { ends[end.rawValue] }
        set { ends[end.rawValue] = newValue }
    }

    static let budget = 256

    mutating func run(_ script: inout Script) {
        var spent = 0
        while spent < Harness.budget, let command = script.byte() {
            spent += command & 0x0f == 15 ? 8 : 1
            if tracing { trace("command \(command & 0x0f) at +\((now.uptimeNanoseconds - 5_000_000_000_000) / 1_000_000) ms") }
            switch command & 0x0f {
            case 0, 1:
                guard let frame = script.frame() else { return }
                forged = true
                receive(frame, at: command & 1 == 0 ? .server : .mediator)
            case 2:
                guard let ms = script.u16() else { return }
                now = now + .milliseconds(Int64(ms))
                tickBoth()
            case 3:
                advanceToDeadline()
                tickBoth()
            case 4:
                startMediator()
            case 5:
                deliverOne(from: .server)
            case 6:
                deliverOne(from: .mediator)
            case 7:
                deliverAll()
            case 8, 9:
                guard let code = script.byte() else { return }
                goAway(command & 1 == 0 ? .server : .mediator, ErrorCode(rawValue: UInt16(code)))
            case 10:
                guard let ref = script.byte(), let length = script.byte() else { return }
                sendData(PortRef(ref), length: Harness.length(length))
            case 11:
                guard let ref = script.byte(), let length = script.byte() else { return }
                consume(PortRef(ref), length: Harness.length(length))
            case 12:
                guard let ref = script.byte() else { return }
                localEOF(PortRef(ref))
            case 13:
                guard let ref = script.byte() else { return }
                reset(PortRef(ref))
            case 14:
                tickBoth()
            default:
                for _ in 0..<8 {
                    advanceToDeadline()
                    tickBoth()
                    deliverAll()
                }
            }
            if !forged { checkFlowControl() }
        }
    }

    /// 0-127 as is, then steps of 512 up to 64 KiB: small lengths for tiny windows, big ones for large.
    static func length(_ byte: UInt8) -> Int { byte < 128 ? Int(byte) : (Int(byte) - 127) * 512 }

    // MARK: Driving the machines

    mutating func receive(_ frame: Frame, at end: End) {
        switch end {
        case .server:
            perform(server.receive(frame, now: now) { $0 == "acme" ? secret : nil }, at: .server)
        case .mediator:
            perform(mediator.receive(frame, now: now), at: .mediator)
        }
    }

    mutating func startMediator() {
        let wasIdle = !self[.mediator].started && !self[.mediator].closed
        let actions = mediator.start(now: now)
        precondition(wasIdle || actions.isEmpty, "start acted on a mediator that was not idle")
        if wasIdle {
            precondition(!actions.isEmpty, "an idle mediator did not say HELLO on start")
            self[.mediator].started = true
        }
        perform(actions, at: .mediator)
    }

    mutating func tickBoth() {
        perform(server.tick(now: now), at: .server)
        perform(mediator.tick(now: now), at: .mediator)
        for end in End.allCases where !self[end].closed {
            if let next = nextDeadline(end) {
                precondition(next > now, "\(end) asks to be ticked at \(next) right after a tick at \(now)")
            }
        }
    }

    mutating func goAway(_ end: End, _ code: ErrorCode) {
        switch end {
        case .server: perform(server.goAway(code, "fuzz goAway"), at: .server)
        case .mediator: perform(mediator.goAway(code, "fuzz goAway"), at: .mediator)
        }
        // goAway ends the session in every state, with or without a `.close` (an idle mediator).
        self[end].closed = true
        check(end)
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
    mutating func perform(_ actions: [SessionAction], at end: End) {
        if tracing && !actions.isEmpty { trace("  \(end): \(actions)") }
        precondition(!self[end].closed || actions.isEmpty, "\(end) acted after it closed: \(actions)")
        for (i, action) in actions.enumerated() {
            switch action {
            case .send(let frame):
                write(frame, from: end)
            case .established(let session):
                precondition(self[end].established == nil, "\(end) established twice")
                precondition(session.name == "acme", "\(end) established a session for '\(session.name)'")
                // Between honest ends, each learns the other's real window and limit.
                let peer = self[end.peer].settings
                precondition(
                    forged || (session.peerInitialWindow == peer.initialWindow && session.peerMaxPayload == peer.maxPayload),
                    "\(end) established with the wrong peer window or limit: \(session)")
                self[end].established = session
            case .deliver(let frame):
                precondition(isEstablished(end), "\(end) delivered \(frame.name) outside an established session")
                relayReceive(frame, at: end)
            case .close:
                precondition(i == actions.count - 1, "\(end) acted after .close in one batch: \(actions)")
                self[end].closed = true
            }
        }
        check(end)
    }

    func check(_ end: End) {
        let state = self[end]
        if state.closed {
            precondition(!isEstablished(end), "\(end) closed but still established")
            precondition(nextDeadline(end) == nil, "\(end) closed but still has a deadline")
        } else {
            precondition(isEstablished(end) == (state.established != nil), "\(end): isEstablished disagrees with its actions")
            if state.started {
                precondition(nextDeadline(end) != nil, "\(end) is open but has no deadline")
            } else {
                precondition(nextDeadline(end) == nil, "\(end) has a deadline before it started")
            }
        }
    }

    // MARK: The connection

    /// Writes a frame on `end`'s channel; it must come out of a decoder unchanged, and fit the peer's
    /// limit unless a forged HELLO or WELCOME told `end` a bigger one.
    mutating func write(_ frame: Frame, from end: End) {
        var bytes = ByteBuffer()
        bytes.writeFrame(frame)
        let length = bytes.readableBytes - Frame.headerLength
        var decoder = FrameDecoder(maxPayload: .max)
        let decoded: Frame?
        do {
            decoded = try decoder.next(&bytes)
        } catch {
            preconditionFailure("\(end) sent a \(frame.name) that does not decode: \(error)")
        }
        precondition(decoded == frame && bytes.readableBytes == 0, "\(end)'s \(frame.name) changed on the wire")
        let fits = length <= Int(self[end.peer].settings.maxPayload)
        precondition(fits || forged, "\(end) sent a \(frame.name) of \(length) bytes, over its peer's limit")
        self[end].outbox.append((frame, fits))
    }

    /// The peer reads the next frame `end` wrote. A closed peer's channel is gone: it reads nothing.
    mutating func deliverOne(from end: End) {
        guard !self[end].outbox.isEmpty else { return }
        let (frame, fits) = self[end].outbox.removeFirst()
        guard !self[end.peer].closed else { return }
        guard fits else {
            // The peer's FrameDecoder throws frameTooLarge; its handler ends the session.
            return goAway(end.peer, .protocolError)
        }
        receive(frame, at: end.peer)
    }

    mutating func deliverAll() {
        var rounds = 0
        while !self[.server].outbox.isEmpty || !self[.mediator].outbox.isEmpty {
            deliverOne(from: .server)
            deliverOne(from: .mediator)
            rounds += 1
            // Machines answering each other forever is a bug, not a reason to hang the fuzzer.
            precondition(rounds < 100_000, "frames never stop flowing")
        }
    }

    // MARK: Relay (docs/protocol.md §6.3, §6.4)

    /// The end's port, created on first use the way CONNECT/ACCEPTED create one; nil before the
    /// session is established (no relay yet) or after it closed.
    mutating func port(_ id: UInt32, at end: End) -> Port? {
        guard !self[end].closed, let session = self[end].established else { return nil }
        if let p = self[end].ports[id] { return p }
        let p = Port(send: SendWindow(initial: session.peerInitialWindow), receive: ReceiveWindow(size: self[end].settings.initialWindow))
        self[end].ports[id] = p
        return p
    }

    mutating func sendData(_ ref: PortRef, length: Int) {
        guard var p = port(ref.portID, at: ref.end), let session = self[ref.end].established else { return }
        guard !p.stream.sentFin && !p.stream.isReset else { return }
        let n = min(length, p.send.credit, Int(session.peerMaxPayload) - Frame.Data.prefixLength)
        guard n > 0 else { return }
        p.send.consume(n)
        self[ref.end].ports[ref.portID] = p
        let bytes = ByteBuffer(repeating: UInt8(truncatingIfNeeded: n), count: n)
        write(.data(.init(portID: ref.portID, bytes: bytes)), from: ref.end)
    }

    mutating func consume(_ ref: PortRef, length: Int) {
        guard var p = port(ref.portID, at: ref.end) else { return }
        let n = min(length, p.receive.buffered)
        let grant = p.receive.consumed(n)
        self[ref.end].ports[ref.portID] = p
        guard let grant, !p.stream.isReset else { return }
        precondition(grant > 0, "ReceiveWindow granted a zero increment")
        write(.window(.init(portID: ref.portID, increment: grant)), from: ref.end)
    }

    mutating func localEOF(_ ref: PortRef) {
        guard var p = port(ref.portID, at: ref.end), !p.stream.isReset else { return }
        let outcome = p.stream.apply(.localEOF)
        self[ref.end].ports[ref.portID] = p
        if outcome == .halfClosed || outcome == .closed {
            write(.finished(.init(portID: ref.portID)), from: ref.end)
        }
    }

    mutating func reset(_ ref: PortRef) {
        guard var p = port(ref.portID, at: ref.end) else { return }
        let outcome = p.stream.apply(.reset)
        self[ref.end].ports[ref.portID] = p
        if outcome == .closed {
            write(.reset(.init(portID: ref.portID, code: .connectionReset)), from: ref.end)
        }
    }

    /// A relay frame the machine delivered to `end`'s layer above.
    mutating func relayReceive(_ frame: Frame, at end: End) {
        switch frame {
        case .data(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }  // in flight across our RST
            guard !p.stream.receivedFin else { return violation("DATA after FINISHED on port \(m.portID)", at: end) }
            do {
                try p.receive.received(m.bytes.readableBytes)
            } catch {
                return violation("\(error)", at: end)
            }
            self[end].ports[m.portID] = p
        case .window(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }
            do {
                try p.send.grant(m.increment)
            } catch {
                return violation("\(error)", at: end)
            }
            self[end].ports[m.portID] = p
        case .finished(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }
            let outcome = p.stream.apply(.remoteFin)
            self[end].ports[m.portID] = p
            if outcome == .duplicate { violation("second FINISHED on port \(m.portID)", at: end) }
        case .reset(let m):
            guard var p = port(m.portID, at: end), !p.stream.isReset else { return }
            _ = p.stream.apply(.reset)
            self[end].ports[m.portID] = p
        default:
            break
        }
    }

    /// Window accounting of every open port direction between honest ends (docs/protocol.md §6.3).
    func checkFlowControl() {
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
                precondition(
                    accounted <= Int(session.peerInitialWindow),
                    "port \(id) \(sender)→\(receiver): credit \(p.send.credit) + in flight \(inFlight) + buffered \(buffered) "
                        + "+ granting \(granting) exceed the window \(session.peerInitialWindow)")
                precondition(
                    p.send.credit > 0 || inFlight > 0 || granting > 0 || buffered > 0,
                    "port \(id) \(sender)→\(receiver) stalls: no credit, nothing in flight, nothing buffered to consume")
            }
        }
    }

    /// The peer broke a relay rule. Between two honest ends that is a bug; after a forged frame it is
    /// what an attacker does, and the end's handler ends the session.
    mutating func violation(_ message: String, at end: End) {
        precondition(forged, "\(end): honest peers broke a relay rule: \(message)")
        goAway(end, .protocolError)
    }
}
