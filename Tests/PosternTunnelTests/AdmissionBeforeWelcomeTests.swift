import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

/// A server session that holds WELCOME until the registry admits the name (docs/protocol.md §4.1,
/// "One session per mediator name"): a mediator refused for its name gets REFUSED instead and never
/// reaches established (it logged "connected (session N)" when WELCOME went first); an admitted one
/// gets WELCOME ahead of everything the server wrote meanwhile.
final class AdmissionBeforeWelcomeTests: XCTestCase {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let secret = Array("correct horse battery staple".utf8)
    var channel: EmbeddedChannel!
    var session: TunnelSession!
    var mediator: MediatorSessionStateMachine!
    private var decoder = FrameDecoder()
    private var written = ByteBuffer()

    override func setUpWithError() throws {
        channel = EmbeddedChannel()
        let secret = self.secret
        session = TunnelSession(
            machine: ServerSessionStateMachine(
                settings: SessionSettings(), sessionID: 42, serverNonce: [UInt8](repeating: 1, count: 32),
                secretFor: { $0 == "acme" ? secret : nil }),
            settings: SessionSettings(), eventLoop: channel.embeddedEventLoop, logger: Logger(label: "test"), now: { [t0] in t0 })
        session.holdsWelcomeUntilAdmitted = true
        try channel.pipeline.syncOperations.addHandler(session)
        try channel.connect(to: SocketAddress(ipAddress: "198.51.100.1", port: 4433)).wait()
        mediator = MediatorSessionStateMachine(
            name: "acme", secret: secret, nonce: [UInt8](repeating: 2, count: 32), softwareVersion: "test", settings: SessionSettings())
        _ = mediator.transportReady(.plain, now: t0)
        // HELLO → CHALLENGE → AUTHENTICATE: the server is established and holds its WELCOME.
        var toServer = sent(mediator.start(now: t0))
        for _ in 0..<3 where !toServer.isEmpty {
            for frame in toServer { try channel.writeInbound(frame) }
            toServer = try framesOut().flatMap { sent(mediator.receive($0, now: t0)) }
        }
        XCTAssertNotNil(session.established)
        XCTAssertTrue(session.awaitingAdmission)
    }

    override func tearDown() {
        _ = try? channel.finish()
    }

    private func sent(_ actions: [SessionAction]) -> [Frame] {
        actions.compactMap { if case .send(let f) = $0 { return f } else { return nil } }
    }

    private func framesOut() throws -> [Frame] {
        channel.embeddedEventLoop.run()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&buffer) }
        var frames: [Frame] = []
        while let frame = try decoder.next(&written) { frames.append(frame) }
        return frames
    }

    func testRefusedBeforeWelcomeTheMediatorNeverEstablishes() throws {
        session.send(.ping(.init(token: 1)))  // a keepalive due meanwhile waits too
        XCTAssertEqual(try framesOut(), [], "nothing leaves before the decision")
        session.goAway(.addressInUse, "name in use: mediator 'acme' is connected")
        let frames = try framesOut()
        XCTAssertEqual(frames, [.refused(.init(code: .addressInUse, message: "name in use: mediator 'acme' is connected"))])
        for frame in frames { _ = mediator.receive(frame, now: t0) }
        XCTAssertFalse(mediator.isEstablished, "the mediator saw no WELCOME")
        XCTAssertFalse(channel.isActive, "the connection closed")
        XCTAssertEqual(session.end?.code, .addressInUse)
    }

    func testAdmittedWelcomeGoesFirst() throws {
        session.send(.ping(.init(token: 1)))
        XCTAssertEqual(try framesOut(), [])
        session.admit()
        let frames = try framesOut()
        XCTAssertEqual(frames.count, 2)
        guard case .welcome = frames.first else { return XCTFail("WELCOME is not first: \(frames)") }
        XCTAssertEqual(frames.last, .ping(.init(token: 1)))
        for frame in frames { _ = mediator.receive(frame, now: t0) }
        XCTAssertTrue(mediator.isEstablished)
        XCTAssertFalse(session.awaitingAdmission)
        // Admitted, a later goAway is a GOAWAY as before.
        session.goAway(.shuttingDown, "bye")
        guard case .goAway = try framesOut().last else { return XCTFail("no GOAWAY") }
    }
}
