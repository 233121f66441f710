import NIOCore
import PosternCore
import PosternWire
import XCTest

/// One direction of a tunnel connection in memory: frames are written with the real encoder and read
/// back with the real `FrameDecoder`, so the two machines talk over actual bytes. `chunkSize` lets a
/// test hand the decoder the bytes a few (or one) at a time, the way TCP may deliver them.
struct FramePipe {
    private var written = ByteBuffer()
    private var arrived = ByteBuffer()
    private var decoder = FrameDecoder()
    /// What was written, in order, to check that the codec returned each frame unchanged.
    private var inFlight: [Frame] = []
    var chunkSize = Int.max

    var isEmpty: Bool { inFlight.isEmpty }

    mutating func write(_ frame: Frame) {
        written.writeFrame(frame)
        inFlight.append(frame)
    }

    /// The next whole frame, or nil when nothing is in flight.
    mutating func read(file: StaticString = #filePath, line: UInt = #line) throws -> Frame? {
        while true {
            if let frame = try decoder.next(&arrived) {
                let sent = inFlight.removeFirst()
                XCTAssertEqual(frame, sent, "the codec changed a \(sent.name) frame in transit", file: file, line: line)
                return frame
            }
            guard written.readableBytes > 0 else {
                XCTAssertEqual(arrived.readableBytes, 0, "bytes left over after the last whole frame", file: file, line: line)
                XCTAssertTrue(inFlight.isEmpty, "a written frame never came out of the decoder", file: file, line: line)
                return nil
            }
            var chunk = written.readSlice(length: min(chunkSize, written.readableBytes))!
            arrived.writeBuffer(&chunk)
        }
    }
}

/// Names the server's machine asked the secret of. The machine's lookup is `@Sendable`; the tests
/// call it from one thread only.
final class LookupLog: @unchecked Sendable {
    var names: [String] = []
}

/// A server and a mediator session machine joined by two `FramePipe`s, with a clock the test moves.
/// It does what the NIO handlers do: starts the server on accept and gives each machine its
/// transport's facts (`transportReady`) before it reads, writes every `.send` frame to the peer's pipe,
/// feeds received frames to `receive`, calls `tick` when asked; and it records every action for the
/// test to inspect.
final class SessionLink {
    var server: ServerSessionStateMachine
    var mediator: MediatorSessionStateMachine
    var now: NIODeadline
    /// What each end's transport reports when ready; nil: the test feeds `transportReady` itself.
    let serverTransport: TransportFacts?
    let mediatorTransport: TransportFacts?

    /// Rewrite a frame a machine sends, or drop it by returning nil: an impostor, a broken path.
    var alterToServer: (Frame) -> Frame? = { $0 }
    var alterToMediator: (Frame) -> Frame? = { $0 }

    private(set) var serverLog: [SessionAction] = []
    private(set) var mediatorLog: [SessionAction] = []
    private(set) var serverReceived: [Frame] = []
    private(set) var mediatorReceived: [Frame] = []
    private let lookups: LookupLog
    /// Names the server asked the secret of.
    var secretLookups: [String] { lookups.names }

    private var toServer = FramePipe()
    private var toMediator = FramePipe()

    /// Starts the server at `now`, as the handler does when the connection is accepted.
    init(
        server: ServerSessionStateMachine, mediator: MediatorSessionStateMachine, now: NIODeadline, lookups: LookupLog,
        serverTransport: TransportFacts?, mediatorTransport: TransportFacts?
    ) {
        self.server = server
        self.mediator = mediator
        self.now = now
        self.lookups = lookups
        self.serverTransport = serverTransport
        self.mediatorTransport = mediatorTransport
        serverDid(self.server.start(now: now))
        if let serverTransport { serverTransportReady(serverTransport) }
    }

    var chunkSize: Int {
        get { toServer.chunkSize }
        set {
            toServer.chunkSize = newValue
            toMediator.chunkSize = newValue
        }
    }

    var hasFramesForServer: Bool { !toServer.isEmpty }
    var hasFramesForMediator: Bool { !toMediator.isEmpty }

    // MARK: Driving the machines

    /// The mediator's channel connected (and its transport became ready, unless the test does that).
    @discardableResult
    func start() -> [SessionAction] {
        var actions = mediatorDid(mediator.start(now: now))
        if let mediatorTransport { actions += mediatorTransportReady(mediatorTransport) }
        return actions
    }

    @discardableResult
    func serverTransportReady(_ facts: TransportFacts) -> [SessionAction] {
        serverDid(server.transportReady(facts, now: now))
    }

    @discardableResult
    func mediatorTransportReady(_ facts: TransportFacts) -> [SessionAction] {
        mediatorDid(mediator.transportReady(facts, now: now))
    }

    @discardableResult
    func serverDecodeFailed(_ error: WireError) -> [SessionAction] {
        serverDid(server.decodeFailed(error, now: now))
    }

    @discardableResult
    func mediatorDecodeFailed(_ error: WireError) -> [SessionAction] {
        mediatorDid(mediator.decodeFailed(error, now: now))
    }

    /// Feeds the next frame waiting for the server to it; nil when none is waiting.
    @discardableResult
    func deliverToServer(file: StaticString = #filePath, line: UInt = #line) throws -> [SessionAction]? {
        guard let frame = try toServer.read(file: file, line: line) else { return nil }
        serverReceived.append(frame)
        return serverDid(server.receive(frame, now: now))
    }

    /// Feeds the next frame waiting for the mediator to it; nil when none is waiting.
    @discardableResult
    func deliverToMediator(file: StaticString = #filePath, line: UInt = #line) throws -> [SessionAction]? {
        guard let frame = try toMediator.read(file: file, line: line) else { return nil }
        mediatorReceived.append(frame)
        return mediatorDid(mediator.receive(frame, now: now))
    }

    /// Delivers frames both ways until neither side has anything in flight.
    func pump(file: StaticString = #filePath, line: UInt = #line) throws {
        var frames = 0
        while try deliverToServer(file: file, line: line) != nil || deliverToMediator(file: file, line: line) != nil {
            frames += 1
            // Two machines answering each other forever is a bug, not a reason to hang the test run.
            guard frames < 10_000 else { return XCTFail("frames never stop flowing", file: file, line: line) }
        }
    }

    @discardableResult
    func tickServer() -> [SessionAction] { serverDid(server.tick(now: now)) }

    @discardableResult
    func tickMediator() -> [SessionAction] { mediatorDid(mediator.tick(now: now)) }

    @discardableResult
    func serverProbe(timeout: TimeAmount) -> [SessionAction] { serverDid(server.probe(timeout: timeout, now: now)) }

    @discardableResult
    func serverGoAway(_ code: ErrorCode, _ message: String) -> [SessionAction] {
        serverDid(server.goAway(code, message))
    }

    @discardableResult
    func mediatorGoAway(_ code: ErrorCode, _ message: String) -> [SessionAction] {
        mediatorDid(mediator.goAway(code, message))
    }

    /// A frame the server's handler writes on its own (requests, relay): not from the machine, and
    /// never altered.
    func inject(toMediator frame: Frame) { toMediator.write(frame) }
    /// A frame the mediator's handler writes on its own (environment, answers, relay).
    func inject(toServer frame: Frame) { toServer.write(frame) }

    func advance(by amount: TimeAmount) { now = now + amount }

    /// Runs both machines' timers the way an event loop would: jump to the earlier deadline, tick
    /// both, deliver what they sent; until `end`, where the clock is left.
    func runClock(until end: NIODeadline, file: StaticString = #filePath, line: UInt = #line) throws {
        while let next = [server.nextDeadline, mediator.nextDeadline].compactMap({ $0 }).min(), next <= end {
            now = max(now, next)
            let serverDue = server.nextDeadline.map { $0 <= now } ?? false
            let mediatorDue = mediator.nextDeadline.map { $0 <= now } ?? false
            let serverActed = !tickServer().isEmpty
            let mediatorActed = !tickMediator().isEmpty
            // A machine that asked to be ticked and then does nothing would spin this loop forever.
            guard (serverActed || !serverDue) && (mediatorActed || !mediatorDue) else {
                return XCTFail(
                    "a tick at nextDeadline did nothing (server due \(serverDue), mediator due \(mediatorDue))", file: file,
                    line: line)
            }
            try pump(file: file, line: line)
        }
        now = max(now, end)
    }

    // MARK: Recording

    @discardableResult
    private func serverDid(_ actions: [SessionAction]) -> [SessionAction] {
        serverLog += actions
        for case .send(let frame) in actions {
            if let altered = alterToMediator(frame) { toMediator.write(altered) }
        }
        return actions
    }

    @discardableResult
    private func mediatorDid(_ actions: [SessionAction]) -> [SessionAction] {
        mediatorLog += actions
        for case .send(let frame) in actions {
            if let altered = alterToServer(frame) { toServer.write(altered) }
        }
        return actions
    }
}

extension Array where Element == SessionAction {
    var sent: [Frame] {
        compactMap { if case .send(let f) = $0 { return f } else { return nil } }
    }
    var established: [EstablishedSession] {
        compactMap { if case .established(let e) = $0 { return e } else { return nil } }
    }
    var delivered: [Frame] {
        compactMap { if case .deliver(let f) = $0 { return f } else { return nil } }
    }
    var closes: [SessionEnd] {
        compactMap { if case .close(let e) = $0 { return e } else { return nil } }
    }
    var pingTokens: [UInt64] {
        sent.compactMap { if case .ping(let p) = $0 { return p.token } else { return nil } }
    }
}

/// The values every session test starts from.
enum Fixture {
    static let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000_000)
    static let secret = Array("correct horse battery staple".utf8)
    static let otherSecret = Array("incorrect donkey battery staple".utf8)
    static let serverNonce: [UInt8] = (0..<32).map { UInt8($0) }
    static let mediatorNonce: [UInt8] = (0..<32).map { UInt8(0x80 + $0) }
    static let sessionID: UInt64 = 0x0123_4567_89ab_cdef

    /// The server's timing governs the session once established.
    static var serverSettings: SessionSettings {
        var s = SessionSettings()
        s.keepaliveInterval = .seconds(10)
        s.deadTimeout = .seconds(30)
        s.handshakeTimeout = .seconds(10)
        s.initialWindow = 1 << 20
        s.maxPayload = 65_536
        return s
    }

    /// Deliberately different from the server's, so a test sees whose value each side uses.
    static var mediatorSettings: SessionSettings {
        var s = SessionSettings()
        s.keepaliveInterval = .seconds(25)
        s.deadTimeout = .seconds(75)
        s.handshakeTimeout = .seconds(8)
        s.initialWindow = 256 << 10
        s.maxPayload = 32_768
        return s
    }

    /// `serverBinding` is the server's own key, `mediatorBinding` the key the mediator saw (the
    /// server's unless told); `peerCertificateNames` and `requiresClientCertificate` what the server's
    /// TLS learned of the mediator's certificate. With `feedTransport` false the test calls
    /// `transportReady` itself.
    static func link(
        name: String = "acme", mediatorSecret: [UInt8] = secret,
        serverSecrets: @escaping @Sendable (String) -> [UInt8]? = { $0 == "acme" ? Fixture.secret : nil },
        serverSettings: SessionSettings = serverSettings, mediatorSettings: SessionSettings = mediatorSettings,
        serverBinding: [UInt8] = [], mediatorBinding: [UInt8]? = nil, peerCertificateNames: [String]? = nil,
        requiresClientCertificate: Bool = false, feedTransport: Bool = true,
        sessionID: UInt64 = sessionID, mediatorNonce: [UInt8] = mediatorNonce, now: NIODeadline = t0
    ) -> SessionLink {
        let lookups = LookupLog()
        return SessionLink(
            server: ServerSessionStateMachine(
                settings: serverSettings, sessionID: sessionID, serverNonce: serverNonce,
                secretFor: { name in
                    lookups.names.append(name)
                    return serverSecrets(name)
                }),
            mediator: MediatorSessionStateMachine(
                name: name, secret: mediatorSecret, nonce: mediatorNonce, softwareVersion: "mediator-1.0",
                settings: mediatorSettings),
            now: now, lookups: lookups,
            serverTransport: feedTransport
                ? TransportFacts(
                    channelBinding: serverBinding, peerCertificateNames: peerCertificateNames,
                    requiresClientCertificate: requiresClientCertificate) : nil,
            mediatorTransport: feedTransport ? TransportFacts(channelBinding: mediatorBinding ?? serverBinding) : nil)
    }

    /// The keys the handshake of `link(...)` derives at each end, computed apart from the machines.
    static func keys(
        _ role: Proof.Role, binding: [UInt8] = [], sessionID: UInt64 = sessionID, mediatorNonce: [UInt8] = mediatorNonce
    ) -> SessionKeys {
        SessionKeys(
            role: role, secret: secret, serverNonce: serverNonce, mediatorNonce: mediatorNonce, binding: binding,
            sessionID: sessionID, name: "acme")
    }

    /// A link whose handshake has completed at `t0`.
    static func establishedLink(
        serverSettings: SessionSettings = serverSettings, file: StaticString = #filePath, line: UInt = #line
    ) throws -> SessionLink {
        let link = link(serverSettings: serverSettings)
        link.start()
        try link.pump(file: file, line: line)
        XCTAssertTrue(link.server.isEstablished, "server not established", file: file, line: line)
        XCTAssertTrue(link.mediator.isEstablished, "mediator not established", file: file, line: line)
        return link
    }

    /// Frames the layers above send once established, one of each kind.
    static let relayFrames: [Frame] = [
        .environment(
            MediatorEnvironment(
                hostname: "lan-host", softwareVersion: "mediator-1.0", capabilities: [.tun],
                interfaces: [
                    .init(
                        index: 2, name: "eth0", mac: [0x02, 0, 0, 0, 0, 1], mtu: 1500, isUp: true,
                        addresses: [.init(address: IPAddress("192.168.77.2")!, prefixLength: 24)])
                ],
                routes: [
                    .init(
                        destination: .init(address: .anyV4, prefixLength: 0), gateway: IPAddress("192.168.77.1")!,
                        interfaceIndex: 2)
                ])),
        .open(.init(requestID: 1, transport: .tcp, exact: true, address: .anyV4, port: 8080)),
        .redirect(.init(requestID: 2, exact: false, address: IPAddress("fd00::1")!, port: 5000)),
        .connect(.init(requestID: 3, portID: 7, destination: Endpoint(host: .name("host.lan"), port: 80))),
        .listen(.init(requestID: 4, portID: 7, backlog: 16)),
        .close(.init(requestID: 5, portID: 7)),
        .done(.init(requestID: 1, portID: 7, local: Endpoint(IPAddress("192.168.77.2")!, 40_000))),
        .failed(.init(requestID: 3, code: .refused, errno: 111, message: "connection refused")),
        .data(.init(portID: 7, bytes: ByteBuffer(string: "GET / HTTP/1.0\r\n\r\n"))),
        .datagram(.init(portID: 8, peer: Endpoint(IPAddress("192.168.77.10")!, 53), bytes: ByteBuffer(bytes: [1, 2, 3]))),
        .window(.init(portID: 7, increment: 65_536)),
        .accepted(.init(listenerID: 7, portID: 9, peer: Endpoint(IPAddress("fd00::20")!, 51_000))),
        .finished(.init(portID: 9)),
        .reset(.init(portID: 9, code: .connectionReset)),
    ]

    /// The four handshake frames, each as a well-formed value.
    static let handshakeFrames: [Frame] = [
        .hello(.init(name: "acme", softwareVersion: "x", nonce: mediatorNonce, initialWindow: 65_536, maxPayload: 65_536)),
        .challenge(.init(nonce: serverNonce)),
        .authenticate(.init(proof: [UInt8](repeating: 7, count: 32))),
        .welcome(
            .init(
                sessionID: 1, proof: [UInt8](repeating: 9, count: 32), keepaliveIntervalMillis: 10_000,
                deadTimeoutMillis: 30_000, initialWindow: 65_536, maxPayload: 65_536)),
    ]
}

/// A small seeded generator so random tests replay exactly (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
