import NIOCore
import NIOPosix
import PosternCore
import PosternWire
import XCTest

@testable import PosternMediator

/// The mediator's remote socket API on real loopback sockets, driven through a real tunnel
/// (docs/protocol.md §5): what each request answers, with the errno and text `postern ctl` shows.
final class RemoteSocketAPITests: XCTestCase {
    private let loopback = IPAddress("127.0.0.1")!
    private var harness: MediatorHarness!
    private var group: MultiThreadedEventLoopGroup!
    private var peers: [Channel] = []

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        harness?.shutdown()
        for channel in peers { try? channel.close().wait() }
        try? group.syncShutdownGracefully()
    }

    private func open(_ id: UInt32, _ transport: Frame.Transport = .tcp, exact: Bool = true, port: UInt16 = 0) -> Frame {
        .open(.init(requestID: id, transport: transport, exact: exact, address: loopback, port: port))
    }

    private func connect(_ id: UInt32, port portID: UInt32 = 0, to port: UInt16) -> Frame {
        .connect(.init(requestID: id, portID: portID, destination: Endpoint(loopback, port)))
    }

    private func close(_ id: UInt32, port: UInt32) -> Frame { .close(.init(requestID: id, portID: port)) }

    /// A loopback TCP server that accepts and holds connections: the LAN host of these tests.
    private func lanServer() throws -> UInt16 {
        let server = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        peers.append(server)
        return UInt16(server.localAddress!.port!)
    }

    /// A loopback port nobody listens on.
    private func closedPort() throws -> UInt16 {
        let server = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = UInt16(server.localAddress!.port!)
        try server.close().wait()
        return port
    }

    private func assertFailed(
        _ failed: Frame.Failed, _ code: ErrorCode, _ errno: Int32, _ message: String, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        XCTAssertEqual(failed.code, code, file: file, line: line)
        XCTAssertEqual(failed.errno, errno, file: file, line: line)
        XCTAssertEqual(failed.message, message, file: file, line: line)
    }

    // MARK: - OPEN

    func testOpenTCPExactAndFirstFree() throws {
        harness = try MediatorHarness()
        let first = try harness.done(open(1))
        XCTAssertEqual(first.portID, 1)
        XCTAssertEqual(first.local.host, .ip(loopback))
        XCTAssertNotEqual(first.local.port, 0, "DONE carries the port the kernel chose")
        // A port another program listens on: exactly that port fails as bind(2) does.
        let lan = try lanServer()
        assertFailed(try harness.failed(open(2, port: lan)), .addressInUse, 98, "Address already in use")
        let next = try harness.done(open(3, exact: false, port: lan))
        XCTAssertGreaterThan(next.local.port, lan, "the first free port upwards")
        XCTAssertEqual(next.portID, 3, "the failed OPEN's id is skipped, never reused")
        // The opened port is held in the kernel: another program cannot listen on it.
        XCTAssertThrowsError(try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: Int(first.local.port)).wait())
    }

    func testOpenUDPExactAndFirstFree() throws {
        harness = try MediatorHarness()
        let first = try harness.done(open(1, .udp))
        XCTAssertNotEqual(first.local.port, 0)
        let taken = try harness.failed(open(2, .udp, port: first.local.port))
        assertFailed(taken, .addressInUse, 98, "Address already in use")
        let next = try harness.done(open(3, .udp, exact: false, port: first.local.port))
        XCTAssertGreaterThan(next.local.port, first.local.port)
        XCTAssertEqual(try harness.portCount(), 2)
    }

    // MARK: - CONNECT

    func testConnectToALoopbackListener() throws {
        harness = try MediatorHarness()
        let lan = try lanServer()
        let implicit = try harness.done(connect(1, to: lan))
        XCTAssertEqual(implicit.portID, 1, "port id 0 takes a new port")
        XCTAssertEqual(implicit.local.host, .ip(loopback))
        // From an opened port: the connection leaves from its address and port.
        let opened = try harness.done(open(2))
        let fromOpened = try harness.done(connect(3, port: opened.portID, to: lan))
        XCTAssertEqual(fromOpened.portID, opened.portID)
        XCTAssertEqual(fromOpened.local, opened.local)
        // A connected port cannot connect or listen again.
        assertFailed(
            try harness.failed(connect(4, port: opened.portID, to: lan)), .invalidState, 0,
            "port \(opened.portID) is not an unconnected TCP port")
        assertFailed(try harness.failed(connect(5, port: 99, to: lan)), .noSuchPort, 0, "no port 99")
    }

    func testConnectToAClosedPortIsRefused() throws {
        harness = try MediatorHarness()
        let port = try closedPort()
        assertFailed(try harness.failed(connect(1, to: port)), .refused, 111, "Connection refused")
        let opened = try harness.done(open(2))
        assertFailed(try harness.failed(connect(3, port: opened.portID, to: port)), .refused, 111, "Connection refused")
        XCTAssertEqual(try harness.portCount(), 0, "an opened port whose CONNECT fails no longer exists")
        assertFailed(try harness.failed(close(4, port: opened.portID)), .noSuchPort, 0, "no port \(opened.portID)")
    }

    func testConnectOutsideTheAllowListIsDenied() throws {
        harness = try MediatorHarness { $0.policy = Policy(allow: [try AllowRule(parsing: "127.0.0.1/32:1")]) }
        let lan = try lanServer()
        assertFailed(
            try harness.failed(connect(1, to: lan)), .deniedByPolicy, 13, "127.0.0.1:\(lan) is not in this mediator's --allow list")
        XCTAssertEqual(try harness.portCount(), 0)
    }

    /// Counts the connections a loopback listener accepted; touched only on its event loop.
    private final class AcceptCount: @unchecked Sendable {
        var value = 0
    }

    /// A loopback listener that counts what reaches it: the mediator host's own service.
    private func hostService() throws -> (port: UInt16, accepted: () throws -> Int) {
        let count = AcceptCount()
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { child in
                count.value += 1
                return child.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        peers.append(server)
        return (UInt16(server.localAddress!.port!), { try server.eventLoop.submit { count.value }.wait() })
    }

    func testMappedLoopbackIsDeniedDespiteABroadIPv6Rule() throws {
        // Issue 8 item 2: `--allow 192.168.77.0/24 --allow ::/0`, then CONNECT to [::ffff:127.0.0.1]:PORT,
        // by address and by a name the mediator resolves to that address.
        harness = try MediatorHarness {
            $0.policy = Policy(allow: [try AllowRule(parsing: "192.168.77.0/24"), try AllowRule(parsing: "::/0")])
        }
        let service = try hostService()
        let mapped = Endpoint(IPAddress("::ffff:127.0.0.1")!, service.port)
        assertFailed(
            try harness.failed(.connect(.init(requestID: 1, portID: 0, destination: mapped))), .deniedByPolicy, 13,
            "[::ffff:127.0.0.1]:\(service.port) (127.0.0.1) is in the loopback range 127.0.0.0/8, protected on the mediator: only an --allow rule inside it opens it"
        )
        for (id, name) in [(2, "::ffff:127.0.0.1"), (3, "localhost"), (4, "::ffff:7f00:1")] {
            let byName = Endpoint(host: .name(name), port: service.port)
            let failed = try harness.failed(.connect(.init(requestID: UInt32(id), portID: 0, destination: byName)))
            XCTAssertEqual(failed.code, .deniedByPolicy, name)
            XCTAssertEqual(failed.errno, 13, name)
        }
        assertFailed(
            try harness.failed(.open(.init(requestID: 5, transport: .udp, exact: false, address: IPAddress("::ffff:127.0.0.1")!, port: 0))),
            .deniedByPolicy, 13,
            "127.0.0.1 is in the loopback range 127.0.0.0/8, protected on the mediator: only an --allow rule inside it allows binding it")
        XCTAssertEqual(try service.accepted(), 0, "nothing reached the host's loopback")
        XCTAssertEqual(try harness.portCount(), 0)
    }

    func testLoopbackIsDeniedWithNoAllowAtAllAndOpenedByARuleNamingIt() throws {
        harness = try MediatorHarness { $0.policy = Policy() }
        let service = try hostService()
        XCTAssertEqual(try harness.failed(connect(1, to: service.port)).code, .deniedByPolicy)
        XCTAssertEqual(
            try harness.failed(.connect(.init(requestID: 2, portID: 0, destination: Endpoint(.anyV4, service.port)))).code, .deniedByPolicy,
            "0.0.0.0 is this host")
        XCTAssertEqual(try harness.failed(open(3)).code, .deniedByPolicy, "no binding on loopback either")
        XCTAssertNotNil(try harness.done(.open(.init(requestID: 4, transport: .tcp, exact: false, address: .anyV4, port: 0))))
        XCTAssertEqual(try service.accepted(), 0)
        harness.shutdown()
        harness = try MediatorHarness { $0.policy = Policy(allow: [try AllowRule(parsing: "127.0.0.1:\(service.port)")]) }
        XCTAssertNotNil(
            try harness.done(.connect(.init(requestID: 1, portID: 0, destination: Endpoint(IPAddress("::ffff:127.0.0.1")!, service.port)))))
        // The listener's accept runs on its own event loop turn: wait for it, bounded.
        let deadline = NIODeadline.now() + .seconds(5)
        while try service.accepted() == 0 && NIODeadline.now() < deadline {
            try group.next().scheduleTask(in: .milliseconds(10)) {}.futureResult.wait()
        }
        XCTAssertEqual(try service.accepted(), 1, "a rule naming the address opens it, in either form")
    }

    func testConnectClosedWhileResolvingIsStillAnswered() throws {
        harness = try MediatorHarness()
        let opened = try harness.done(open(1))
        // A name resolves off the event loop, so CLOSE (read in the same turn) comes first.
        let name = Frame.connect(.init(requestID: 2, portID: opened.portID, destination: Endpoint(host: .name("localhost"), port: 9)))
        let answers = try harness.send([name, close(3, port: opened.portID)])
        guard case .failed(let connectAnswer) = answers[0], case .done(let closeAnswer) = answers[1] else {
            return XCTFail("unexpected answers \(answers)")
        }
        assertFailed(connectAnswer, .connectionReset, 103, "port \(opened.portID) was closed while connecting")
        XCTAssertEqual(closeAnswer.portID, opened.portID)
        XCTAssertEqual(try harness.portCount(), 0)
    }

    // MARK: - LISTEN

    func testListenIsDeniedWithoutAllowListen() throws {
        harness = try MediatorHarness()
        let opened = try harness.done(open(1))
        assertFailed(
            try harness.failed(.listen(.init(requestID: 2, portID: opened.portID, backlog: 16))), .deniedByPolicy, 13,
            "this mediator does not allow listening (--allow-listen)")
        // The port is unchanged: it still connects.
        XCTAssertEqual(try harness.done(connect(3, port: opened.portID, to: try lanServer())).portID, opened.portID)
    }

    func testListenAcceptsAndCloseStopsAccepting() throws {
        harness = try MediatorHarness { $0.policy.listenEnabled = true }
        let opened = try harness.done(open(1))
        let listening = try harness.done(.listen(.init(requestID: 2, portID: opened.portID, backlog: 16)))
        XCTAssertEqual(listening.portID, opened.portID)
        XCTAssertEqual(listening.local, opened.local)
        let client = try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: Int(opened.local.port)).wait()
        peers.append(client)
        let accepted = try harness.nextAccepted()
        XCTAssertEqual(accepted.listenerID, opened.portID)
        XCTAssertEqual(accepted.portID, opened.portID + 1, "each accepted connection takes a new port id")
        XCTAssertEqual(accepted.peer, client.localAddress?.endpoint)
        assertFailed(
            try harness.failed(.listen(.init(requestID: 3, portID: opened.portID, backlog: 16))), .invalidState, 0,
            "port \(opened.portID) is not an unconnected TCP port")
        let closed = try harness.done(close(4, port: opened.portID))
        XCTAssertEqual(closed.local, opened.local)
        XCTAssertEqual(try harness.portCount(), 1, "the accepted connection goes on")
        // No longer listening: the address is free again.
        XCTAssertEqual(try harness.done(open(5, port: opened.local.port)).local, opened.local)
    }

    // MARK: - CLOSE and REDIRECT

    func testCloseReleasesTheAddressAndUnknownPortsFail() throws {
        harness = try MediatorHarness()
        assertFailed(try harness.failed(close(1, port: 77)), .noSuchPort, 0, "no port 77")
        let opened = try harness.done(open(2))
        let closed = try harness.done(close(3, port: opened.portID))
        XCTAssertEqual(closed.portID, opened.portID)
        XCTAssertEqual(closed.local, opened.local)
        XCTAssertEqual(try harness.done(open(4, port: opened.local.port)).local, opened.local, "the address was released")
        assertFailed(try harness.failed(close(5, port: opened.portID)), .noSuchPort, 0, "no port \(opened.portID)")
        let udp = try harness.done(open(6, .udp))
        XCTAssertEqual(try harness.done(close(7, port: udp.portID)).local, udp.local)
    }

    func testRedirectIsDeniedWithoutAllowRedirect() throws {
        harness = try MediatorHarness { $0.policy.listenEnabled = true }
        let redirect = Frame.redirect(.init(requestID: 1, exact: false, address: loopback, port: 0))
        assertFailed(
            try harness.failed(redirect), .deniedByPolicy, 13, "this mediator does not allow redirect (--allow-redirect)")
        XCTAssertEqual(try harness.portCount(), 0)
    }

    private func redirect(_ id: UInt32, exact: Bool = true, address: IPAddress? = nil, port: UInt16 = 0) -> Frame {
        .redirect(.init(requestID: id, exact: exact, address: address ?? loopback, port: port))
    }

    func testRedirectExactFirstFreeAndInUse() throws {
        harness = try MediatorHarness { $0.policy.redirectEnabled = true }
        let first = try harness.done(redirect(1))
        XCTAssertEqual(first.portID, 1)
        XCTAssertEqual(first.local.host, .ip(loopback))
        XCTAssertNotEqual(first.local.port, 0, "DONE carries the port the kernel chose")
        assertFailed(try harness.failed(redirect(2, port: first.local.port)), .addressInUse, 98, "Address already in use")
        let next = try harness.done(redirect(3, exact: false, port: first.local.port))
        XCTAssertGreaterThan(next.local.port, first.local.port, "the first free port upwards")
        XCTAssertEqual(next.portID, 3, "the failed REDIRECT's id is skipped")
        // The port is bound on this host: nobody else gets it, until CLOSE.
        XCTAssertThrowsError(try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: Int(first.local.port)).wait())
        XCTAssertEqual(try harness.done(close(4, port: first.portID)).local, first.local)
        try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: Int(first.local.port)).wait().close().wait()
    }

    func testRedirectOfAProtectedAddressAndThePortLimit() throws {
        harness = try MediatorHarness {
            $0.policy = Policy(redirectEnabled: true)  // no rule names loopback
            $0.maxPorts = 1
        }
        let denied = try harness.failed(redirect(1))
        XCTAssertEqual(denied.code, .deniedByPolicy)
        XCTAssertEqual(denied.errno, 13)
        assertFailed(
            try harness.failed(redirect(2, address: IPAddress("::ffff:127.0.0.1")!)), .deniedByPolicy, 13,
            "127.0.0.1 is in the loopback range 127.0.0.0/8, protected on the mediator: only an --allow rule inside it allows binding it")
        _ = try harness.done(redirect(3, address: .anyV4))
        assertFailed(try harness.failed(redirect(4, address: .anyV4)), .limitExceeded, 0, "the mediator holds its limit of 1 ports")
    }

    /// Every LAN sender reaches the server with its address and port, none of them known before; the
    /// server's answers leave from the redirected port to the sender it names.
    func testRedirectRelaysAnySenderAndAnswersFromThePort() throws {
        harness = try MediatorHarness {
            $0.policy = Policy(redirectEnabled: true)  // not even loopback is allowed as a destination
            $0.policy.allow = [try AllowRule(parsing: "127.0.0.1/32:1")]  // binding 127.0.0.1 needs a rule naming it
        }
        let done = try harness.done(redirect(1))
        let recorder = try harness.receiveDatagrams(portID: done.portID)
        var senders: [Channel] = []
        for _ in 0..<3 {
            let s = try DatagramBootstrap(group: group).channelInitializer { $0.pipeline.addHandler(Inbox()) }
                .bind(host: "127.0.0.1", port: 0).wait()
            peers.append(s)
            senders.append(s)
        }
        let target = try SocketAddress(ipAddress: "127.0.0.1", port: Int(done.local.port))
        for (i, s) in senders.enumerated() {
            try s.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: [UInt8(i), 1, 2]))).wait()
        }
        let got = try recorder.datagrams(3)
        XCTAssertEqual(got.count, 3)
        for (i, s) in senders.enumerated() {
            let port = UInt16(s.localAddress!.port!)
            let d = got.first { $0.peer.port == port }
            XCTAssertEqual(d?.bytes, ByteBuffer(bytes: [UInt8(i), 1, 2]), "sender \(i)'s datagram, with its port")
            XCTAssertEqual(d?.peer.host, .ip(loopback))
        }
        // Answers to each sender, from the redirected port.
        for (i, s) in senders.enumerated() {
            try harness.sendDatagram(portID: done.portID, to: Endpoint(loopback, UInt16(s.localAddress!.port!)), [UInt8(i), 9])
        }
        for (i, s) in senders.enumerated() {
            let inbox = try s.pipeline.handler(type: Inbox.self).wait()
            let answer = try inbox.next(on: s.eventLoop)
            XCTAssertEqual(answer?.data, ByteBuffer(bytes: [UInt8(i), 9]))
            XCTAssertEqual(answer?.remoteAddress.port, Int(done.local.port), "the answer leaves from the redirected port")
        }
        // A destination that never sent here is not a sender to answer: the policy denies it.
        let stranger = try DatagramBootstrap(group: group).channelInitializer { $0.pipeline.addHandler(Inbox()) }
            .bind(host: "127.0.0.1", port: 0).wait()
        peers.append(stranger)
        try harness.sendDatagram(portID: done.portID, to: Endpoint(loopback, UInt16(stranger.localAddress!.port!)), [7])
        XCTAssertNil(try stranger.pipeline.handler(type: Inbox.self).wait().next(on: stranger.eventLoop, timeout: .milliseconds(300)))
    }

    /// A flood of senders is bounded: the port remembers at most its peer capacity, and every
    /// datagram is relayed or dropped, never held.
    func testAFloodOfSendersIsRelayedWithoutGrowing() throws {
        harness = try MediatorHarness {
            $0.policy = Policy(redirectEnabled: true)
            $0.policy.allow = [try AllowRule(parsing: "127.0.0.1/32:1")]
        }
        let done = try harness.done(redirect(1))
        let recorder = try harness.receiveDatagrams(portID: done.portID)
        let target = try SocketAddress(ipAddress: "127.0.0.1", port: Int(done.local.port))
        for i in 0..<200 {
            let s = try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
            try s.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: [UInt8(i % 256)]))).wait()
            try s.close().wait()
        }
        XCTAssertEqual(try recorder.datagrams(200).count, 200, "every sender reached the server once")
        XCTAssertEqual(try harness.portCount(), 1, "senders take no ports")
    }

    // MARK: - Limits

    func testTheRequestRateFollowsTheInjectedClock() throws {
        harness = try MediatorHarness { $0.maxRequestRate = 3 }
        for id: UInt32 in 1...3 { _ = try harness.done(open(id)) }
        assertFailed(
            try harness.failed(open(4)), .limitExceeded, 11, "more than 3 requests a second (the mediator's --max-request-rate)")
        XCTAssertEqual(try harness.done(close(5, port: 1)).portID, 1, "CLOSE only frees: never limited")
        // The mediator's clock stands still, so no token comes back however long this test takes.
        assertFailed(
            try harness.failed(connect(6, to: 1)), .limitExceeded, 11, "more than 3 requests a second (the mediator's --max-request-rate)")
        try harness.advanceClock(by: .milliseconds(340))
        _ = try harness.done(open(7))
        XCTAssertEqual(try harness.failed(open(8)).code, .limitExceeded)
    }

    func testThePortLimit() throws {
        harness = try MediatorHarness { $0.maxPorts = 2 }
        let first = try harness.done(open(1))
        _ = try harness.done(open(2, .udp))
        assertFailed(try harness.failed(open(3)), .limitExceeded, 0, "the mediator holds its limit of 2 ports")
        assertFailed(try harness.failed(connect(4, to: try lanServer())), .limitExceeded, 0, "the mediator holds its limit of 2 ports")
        _ = try harness.done(close(5, port: first.portID))
        _ = try harness.done(open(6))
    }

    func testTheEndOfTheSessionReleasesEveryPort() throws {
        harness = try MediatorHarness { $0.policy.listenEnabled = true }
        let reserved = try harness.done(open(1))
        let listener = try harness.done(open(2))
        _ = try harness.done(.listen(.init(requestID: 3, portID: listener.portID, backlog: 4)))
        let udp = try harness.done(open(4, .udp))
        _ = try harness.done(connect(5, to: try lanServer()))
        XCTAssertEqual(try harness.portCount(), 4)
        _ = try harness.closeTunnel()
        XCTAssertEqual(try harness.portCount(), 0)
        // Every address is free again on this host.
        for local in [reserved.local, listener.local] {
            let rebound = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: Int(local.port)).wait()
            try rebound.close().wait()
        }
        let datagram = try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: Int(udp.local.port)).wait()
        try datagram.close().wait()
    }
}

/// Keeps what a loopback UDP socket receives, for the test to take.
private final class Inbox: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private var received: [AddressedEnvelope<ByteBuffer>] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.append(unwrapInboundIn(data))
    }

    /// The next datagram within `timeout`, or nil.
    func next(on loop: EventLoop, timeout: TimeAmount = .seconds(5)) throws -> AddressedEnvelope<ByteBuffer>? {
        let deadline = NIODeadline.now() + timeout
        while true {
            let got = try loop.submit { self.received.isEmpty ? nil : self.received.removeFirst() }.wait()
            if got != nil || NIODeadline.now() > deadline { return got }
            usleep(20_000)
        }
    }
}
