import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// How a `udp:NAME/…` forward gets its mediator port (README, "Forwards"): REDIRECT first; OPEN only
/// when the mediator refuses REDIRECT by policy or does not know it; any other failure is final.
/// A real `MediatorLink` on a real server `TunnelSession` (in memory), established by a real
/// mediator state machine; the test plays the mediator's answers.
final class UDPForwardRedirectTests: XCTestCase {
    private var channel: EmbeddedChannel!
    private var link: MediatorLink!
    private var registry: MediatorRegistry!
    private var forward: UDPForwardFromMediator!
    private var decoder = FrameDecoder()
    private var written = ByteBuffer()

    override func setUpWithError() throws {
        channel = EmbeddedChannel()
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let secret = Array("correct horse battery staple".utf8)
        let settings = SessionSettings()
        let session = TunnelSession(
            machine: ServerSessionStateMachine(
                settings: settings, sessionID: 42, serverNonce: [UInt8](repeating: 1, count: 32),
                secretFor: { $0 == "acme" ? secret : nil }),
            settings: settings, eventLoop: channel.embeddedEventLoop, logger: Logger(label: "test"), now: { t0 })
        registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        link = MediatorLink(session: session, registry: registry, connectedAt: Date(timeIntervalSince1970: 0))
        session.delegate = link
        try channel.pipeline.syncOperations.addHandler(session)
        try channel.connect(to: SocketAddress(ipAddress: "198.51.100.1", port: 4433)).wait()
        var mediator = MediatorSessionStateMachine(
            name: "acme", secret: secret, nonce: [UInt8](repeating: 2, count: 32), softwareVersion: "test", settings: settings)
        _ = mediator.transportReady(.plain, now: t0)
        var toServer = Self.sent(mediator.start(now: t0))
        for _ in 0..<10 where !toServer.isEmpty {
            for frame in toServer { try channel.writeInbound(frame) }
            toServer = try framesOut().flatMap { Self.sent(mediator.receive($0, now: t0)) }
        }
        XCTAssertTrue(link.isOpen, "the handshake completed")
        _ = try framesOut()
        forward = UDPForwardFromMediator(
            spec: try ForwardSpec(parsing: "udp:acme/0.0.0.0:5000=203.0.113.10:5000"), registry: registry,
            eventLoop: channel.embeddedEventLoop, limits: DatagramFlowLimits(), now: { t0 }, logger: Logger(label: "test"))
    }

    override func tearDown() {
        _ = try? channel.finish()
    }

    private static func sent(_ actions: [SessionAction]) -> [Frame] {
        actions.compactMap { if case .send(let f) = $0 { return f } else { return nil } }
    }

    private func framesOut() throws -> [Frame] {
        channel.embeddedEventLoop.run()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&buffer) }
        var frames: [Frame] = []
        while let frame = try decoder.next(&written) { frames.append(frame) }
        return frames
    }

    /// The one request the forward sent since the last call.
    private func request() throws -> Frame {
        let frames = try framesOut().filter { if case .ping = $0 { return false } else { return true } }
        XCTAssertEqual(frames.count, 1, "one request: \(frames)")
        return try XCTUnwrap(frames.first)
    }

    private func answer(_ frame: Frame) throws {
        try channel.writeInbound(frame)
        channel.embeddedEventLoop.run()
    }

    private func failed(_ requestID: UInt32, _ code: ErrorCode, errno: Int32 = 0) -> Frame {
        .failed(.init(requestID: requestID, code: code, errno: errno, message: "\(code)"))
    }

    private func done(_ requestID: UInt32, port: UInt32) -> Frame {
        .done(.init(requestID: requestID, portID: port, local: Endpoint(.anyV4, 5000)))
    }

    /// The REDIRECT the forward sends first: exactly its listen address and port.
    private func expectRedirect() throws -> UInt32 {
        guard case .redirect(let r) = try request() else {
            XCTFail("the forward did not ask for REDIRECT first")
            throw TestError()
        }
        XCTAssertEqual(r.address, .anyV4)
        XCTAssertEqual(r.port, 5000)
        XCTAssertTrue(r.exact)
        return r.requestID
    }

    func testAMediatorThatAllowsRedirectGivesARedirectedPort() throws {
        forward.attach(link)
        try answer(done(try expectRedirect(), port: 7))
        XCTAssertEqual(link.ports[7]?.kind, "redirected")
        XCTAssertEqual(try framesOut().filter { if case .open = $0 { return true } else { return false } }.count, 0)
        XCTAssertEqual(forward.current?.portID, 7)
    }

    func testRefusedByPolicyOrNotSupportedFallsBackToOpen() throws {
        for (code, errno, port) in [(ErrorCode.deniedByPolicy, Int32(13), UInt32(3)), (.notSupported, 0, 4)] {
            forward.attach(link)
            try answer(failed(try expectRedirect(), code, errno: errno))
            guard case .open(let o) = try request() else { return XCTFail("no OPEN after REDIRECT failed with \(code)") }
            XCTAssertEqual(o.transport, .udp)
            XCTAssertEqual(o.address, .anyV4)
            XCTAssertEqual(o.port, 5000)
            XCTAssertTrue(o.exact)
            try answer(done(o.requestID, port: port))
            XCTAssertEqual(link.ports[port]?.kind, "open", "after \(code)")
            XCTAssertEqual(forward.current?.portID, port)
        }
    }

    func testOtherFailuresAreFinal() throws {
        var events: [ServerEvent] = []
        _ = registry.events.subscribe { events.append($0) }
        forward.attach(link)
        try answer(failed(try expectRedirect(), .addressInUse, errno: 98))
        XCTAssertEqual(try framesOut().filter { if case .open = $0 { return true } else { return false } }.count, 0, "no OPEN")
        XCTAssertNil(forward.current)
        XCTAssertEqual(events.last?.kind, "forward-failed")
    }

    func testAnOpenRefusedAfterARefusedRedirectIsFinal() throws {
        forward.attach(link)
        try answer(failed(try expectRedirect(), .deniedByPolicy, errno: 13))
        guard case .open(let o) = try request() else { return XCTFail("no OPEN") }
        try answer(failed(o.requestID, .deniedByPolicy, errno: 13))
        XCTAssertTrue(try framesOut().isEmpty, "asked once each, no loop")
        XCTAssertNil(forward.current)
    }

    private struct TestError: Error {}
}
