import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PosternCore
import PosternWire
import XCTest

@testable import PosternMediator

/// Pipelined CONNECT on the mediator (docs/protocol.md §5.3), on real loopback sockets through a real
/// tunnel: a server-chosen port id, its DATA and FINISHED sent right behind the CONNECT in the same
/// turn, kept while the mediator connects and written once connected — and every abuse of it.
final class PipelinedConnectTests: XCTestCase {
    private let loopback = IPAddress("127.0.0.1")!
    private let s1 = PortIDRange.firstServerID
    private var harness: MediatorHarness!
    private var group: MultiThreadedEventLoopGroup!
    private var peers: [Channel] = []
    /// Every byte the LAN server received, all connections together.
    private let lanReceived = NIOLockedValueBox<[UInt8]>([])
    private let lanConnections = NIOLockedValueBox(0)

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        harness?.shutdown()
        for channel in peers { try? channel.close().wait() }
        try? group.syncShutdownGracefully()
    }

    /// A LAN server that echoes what it reads and closes its side after the client's FIN.
    private final class Echo: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let received: NIOLockedValueBox<[UInt8]>
        init(received: NIOLockedValueBox<[UInt8]>) { self.received = received }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let b = unwrapInboundIn(data)
            received.withLockedValue { $0 += Array(b.readableBytesView) }
            context.writeAndFlush(wrapOutboundOut(b), promise: nil)
        }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let e = event as? ChannelEvent, e == .inputClosed { context.close(mode: .output, promise: nil) }
        }
    }

    private func lanServer() throws -> UInt16 {
        let received = lanReceived
        let connections = lanConnections
        return try listen { channel in
            connections.withLockedValue { $0 += 1 }
            return Echo(received: received)
        }
    }

    /// A loopback LAN server (half-closure allowed) whose connections get `handler(channel)`.
    private func listen(_ handler: @escaping @Sendable (Channel) -> ChannelHandler) throws -> UInt16 {
        let server = try ServerBootstrap(group: group)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler(channel)) }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        peers.append(server)
        return UInt16(server.localAddress!.port!)
    }

    private func closedPort() throws -> UInt16 {
        let server = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = UInt16(server.localAddress!.port!)
        try server.close().wait()
        return port
    }

    private func connect(_ request: UInt32, port portID: UInt32, to port: UInt16) -> Frame {
        .connect(.init(requestID: request, portID: portID, destination: Endpoint(loopback, port)))
    }

    /// To a name: it resolves off the event loop, so frames sent in the same turn reach the port first.
    private func connectByName(_ request: UInt32, port portID: UInt32, to port: UInt16) -> Frame {
        .connect(.init(requestID: request, portID: portID, destination: Endpoint(host: .name("localhost"), port: port)))
    }

    private func data(_ portID: UInt32, _ text: String) -> Frame { .data(.init(portID: portID, bytes: ByteBuffer(string: text))) }
    private func data(_ portID: UInt32, count: Int) -> Frame {
        .data(.init(portID: portID, bytes: ByteBuffer(repeating: 0x61, count: count)))
    }

    private func text(_ frames: [Frame]) -> String {
        frames.map { if case .data(let d) = $0 { return String(buffer: d.bytes) } else { return "" } }.joined()
    }

    private func isFinished(_ f: Frame) -> Bool {
        if case .finished = f { return true }
        return false
    }

    private func resetCode(_ frames: [Frame]) -> ErrorCode? {
        for f in frames { if case .reset(let r) = f { return r.code } }
        return nil
    }

    private func lanBytes() -> [UInt8] { lanReceived.withLockedValue { $0 } }

    private func pipelined() throws -> MediatorHarness {
        try MediatorHarness { $0.pipelinedConnects = true }
    }

    /// A LAN server that speaks first and half-closes at once: "hello", then its FIN; it keeps
    /// reading, so what the server sends after that FIN must still arrive (a relayed socket allows
    /// remote half-closure and reads only when its relay asks).
    private final class Greeter: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let received: NIOLockedValueBox<[UInt8]>
        init(received: NIOLockedValueBox<[UInt8]>) { self.received = received }
        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "hello")), promise: nil)
            context.close(mode: .output, promise: nil)
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received.withLockedValue { $0 += Array(unwrapInboundIn(data).readableBytesView) }
        }
    }

    private func greeter() throws -> UInt16 {
        let received = lanReceived
        return try listen { _ in Greeter(received: received) }
    }

    // MARK: - Use

    func testBytesAndFinSentBeforeDoneReachTheLANAndTheAnswerComesBack() throws {
        harness = try pipelined()
        let lan = try lanServer()
        let stream = try harness.receiveStream(portID: s1)
        let answers = try harness.sendMixed([
            connect(1, port: s1, to: lan), data(s1, "GET / HTTP/1.0\r\n"), data(s1, "\r\n"), .finished(.init(portID: s1)),
        ])
        guard case .done(let done) = answers[0] else { return XCTFail("CONNECT answered \(answers[0])") }
        XCTAssertEqual(done.portID, s1, "the port has the id the server named")
        XCTAssertEqual(done.local.host, .ip(loopback))
        let frames = try stream.frames { $0.contains(where: self.isFinished) }
        XCTAssertEqual(text(frames), "GET / HTTP/1.0\r\n\r\n", "echoed: written in order, once")
        XCTAssertTrue(frames.contains(where: isFinished), "the FIN went through and the LAN side closed after it")
        XCTAssertEqual(Array(lanBytes()), Array("GET / HTTP/1.0\r\n\r\n".utf8))
        // Server-chosen and mediator-chosen ids live side by side.
        guard case .done(let own) = try harness.sendMixed([connect(2, port: 0, to: lan)])[0] else { return XCTFail("port id 0") }
        XCTAssertEqual(own.portID, 1)
    }

    /// Pipelined and plain CONNECTs in turn: each connection's socket is a relayed one (the LAN's
    /// half-close crosses as FINISHED and the server's later bytes are still written). The mediator
    /// keeps one bootstrap for plain CONNECTs; a pipelined one once set its own initializer on that
    /// shared bootstrap, so the plain CONNECT after it ran without the relayed options.
    func testEveryConnectAfterAPipelinedOneIsARelayedSocket() throws {
        harness = try pipelined()
        let lan = try greeter()
        var expected = ""
        // Plain CONNECTs get the mediator's own ids, 1 and 2: recorders wait there before the
        // "hello" can arrive.
        for (i, (portID, id)) in [(s1, s1), (0, 1), (s1 + 1, s1 + 1), (0, 2)].enumerated() {
            let request = UInt32(i + 1)
            let stream = try harness.receiveStream(portID: id)
            guard case .done(let done) = try harness.sendMixed([connect(request, port: portID, to: lan)])[0] else {
                return XCTFail("CONNECT \(request) not done")
            }
            XCTAssertEqual(done.portID, id)
            let frames = try stream.frames { $0.contains(where: self.isFinished) }
            XCTAssertEqual(text(frames), "hello", "CONNECT \(request): the LAN spoke first, then its FIN")
            let after = "after \(request);"
            expected += after
            _ = try harness.sendMixed([data(done.portID, after)])
            let deadline = NIODeadline.now() + .seconds(5)
            while String(decoding: lanBytes(), as: UTF8.self) != expected, NIODeadline.now() < deadline { usleep(10_000) }
            XCTAssertEqual(String(decoding: lanBytes(), as: UTF8.self), expected, "CONNECT \(request): bytes after the LAN's FIN")
        }
    }

    func testWithTheCapabilityOffAServerIDIsNoSuchPortAndItsBytesAreDropped() throws {
        harness = try MediatorHarness { $0.pipelinedConnects = false }
        let lan = try lanServer()
        let answers = try harness.sendMixed([connect(1, port: s1, to: lan), data(s1, "dropped")])
        guard case .failed(let f) = answers[0] else { return XCTFail("answered \(answers[0])") }
        XCTAssertEqual(f.code, .noSuchPort, "what a mediator that predates it answers")
        XCTAssertEqual(try harness.portCount(), 0)
        XCTAssertEqual(lanConnections.withLockedValue { $0 }, 0)
    }

    // MARK: - Abuse

    func testAServerIDInUseIsRefusedAndTheLivePortGoesOn() throws {
        harness = try pipelined()
        let lan = try lanServer()
        let stream = try harness.receiveStream(portID: s1)
        guard case .done = try harness.sendMixed([connect(1, port: s1, to: lan), data(s1, "one")])[0] else { return XCTFail() }
        _ = try stream.frames { self.text($0) == "one" }
        let again = try harness.sendMixed([connect(2, port: s1, to: lan), data(s1, "two")])
        guard case .failed(let f) = again[0] else { return XCTFail("answered \(again[0])") }
        XCTAssertEqual(f.code, .invalidState)
        XCTAssertEqual(f.message, "port id \(s1) is not above the last server-chosen id \(s1): ids are never reused")
        // The live port was not touched: the DATA behind the refused CONNECT is simply its next bytes.
        XCTAssertEqual(text(try stream.frames { self.text($0) == "onetwo" }), "onetwo")
        XCTAssertEqual(lanConnections.withLockedValue { $0 }, 1, "no second connection")
        XCTAssertEqual(try harness.portCount(), 1)
    }

    func testDataBeyondTheWindowWhileConnectingResetsAndNothingIsWritten() throws {
        var settings = SessionSettings()
        settings.initialWindow = 1000
        harness = try MediatorHarness(settings: settings) { $0.pipelinedConnects = true }
        let lan = try lanServer()
        let stream = try harness.receiveStream(portID: s1)
        let answers = try harness.sendMixed([connectByName(1, port: s1, to: lan), data(s1, count: 600), data(s1, count: 401)])
        XCTAssertEqual(resetCode(try stream.frames { self.resetCode($0) != nil }), .protocolError)
        guard case .failed(let f) = answers[0] else { return XCTFail("answered \(answers[0])") }
        XCTAssertEqual(f.code, .connectionReset, "answered once, after the port it named was reset")
        XCTAssertEqual(lanBytes(), [], "nothing written")
        XCTAssertEqual(try harness.portCount(), 0)
    }

    func testMoreThan64FramesWhileConnectingReset() throws {
        harness = try pipelined()
        let lan = try lanServer()
        let stream = try harness.receiveStream(portID: s1)
        let windows = (0...StreamPortStateMachine.maxEarlyFrames).map { _ in Frame.window(.init(portID: s1, increment: 1)) }
        let answers = try harness.sendMixed([connectByName(1, port: s1, to: lan)] + windows)
        XCTAssertEqual(resetCode(try stream.frames { self.resetCode($0) != nil }), .protocolError)
        guard case .failed = answers[0] else { return XCTFail("answered \(answers[0])") }
        XCTAssertEqual(try harness.portCount(), 0)
    }

    func testAResetBeforeTheConnectCompletesLeavesNoSocketAndOneFailed() throws {
        harness = try pipelined()
        let lan = try lanServer()
        let answers = try harness.sendMixed([
            connectByName(1, port: s1, to: lan), data(s1, "never"), .reset(.init(portID: s1, code: .connectionReset)),
        ])
        XCTAssertEqual(answers.count, 1)
        guard case .failed(let f) = answers[0] else { return XCTFail("answered \(answers[0])") }
        XCTAssertEqual(f.code, .connectionReset)
        XCTAssertEqual(f.errno, 103)
        XCTAssertEqual(f.message, "port \(s1) was reset by the server while connecting")
        XCTAssertEqual(try harness.portCount(), 0)
        XCTAssertEqual(lanBytes(), [])
        XCTAssertEqual(lanConnections.withLockedValue { $0 }, 0, "resolved after the RESET: never connected")
        // The id stays used: the server never names it again, and if it did it would be refused.
        guard case .failed(let again) = try harness.sendMixed([connect(2, port: s1, to: lan)])[0] else { return XCTFail() }
        XCTAssertEqual(again.code, .invalidState)
    }

    func testARefusedConnectWithDataQueuedWritesNothing() throws {
        harness = try pipelined()
        let port = try closedPort()
        let answers = try harness.sendMixed([connect(1, port: s1, to: port), data(s1, "lost"), .finished(.init(portID: s1))])
        guard case .failed(let f) = answers[0] else { return XCTFail("answered \(answers[0])") }
        XCTAssertEqual(f.code, .refused)
        XCTAssertEqual(f.errno, 111)
        XCTAssertEqual(try harness.portCount(), 0)
        // Later frames for the id are unknown: dropped, nothing happens.
        _ = try harness.sendMixed([data(s1, "late")])
        XCTAssertEqual(try harness.portCount(), 0)
    }

    func testADeniedDestinationWithDataQueuedNeverConnects() throws {
        let lan = try lanServer()
        let allowed = try lanServer()
        harness = try MediatorHarness {
            $0.pipelinedConnects = true
            $0.policy = Policy(allow: [try AllowRule(parsing: "127.0.0.1:\(allowed)")])
        }
        let answers = try harness.sendMixed([connect(1, port: s1, to: lan), data(s1, "secret")])
        guard case .failed(let f) = answers[0] else { return XCTFail("answered \(answers[0])") }
        XCTAssertEqual(f.code, .deniedByPolicy)
        XCTAssertEqual(f.errno, 13)
        XCTAssertEqual(lanConnections.withLockedValue { $0 }, 0)
        XCTAssertEqual(lanBytes(), [])
        XCTAssertEqual(try harness.portCount(), 0)
    }

    func testAFloodOfPipelinedConnectsMeetsTheRequestRateAndThePortLimit() throws {
        harness = try MediatorHarness {
            $0.pipelinedConnects = true
            $0.maxRequestRate = 6
            $0.maxPorts = 4
        }
        let lan = try lanServer()
        var frames: [Frame] = []
        for i in 0..<10 {
            let id = s1 + UInt32(i)
            frames += [connect(UInt32(i + 1), port: id, to: lan), data(id, "x"), .finished(.init(portID: id))]
        }
        let answers = try harness.sendMixed(frames)
        var done = 0
        var limited = 0
        for a in answers {
            switch a {
            case .done: done += 1
            case .failed(let f) where f.code == .limitExceeded: limited += 1
            default: XCTFail("unexpected \(a)")
            }
        }
        XCTAssertEqual(done, 4, "the port limit")
        XCTAssertEqual(limited, 6, "the port limit, then the request rate")
        XCTAssertEqual(lanConnections.withLockedValue { $0 }, 4)
    }
}
