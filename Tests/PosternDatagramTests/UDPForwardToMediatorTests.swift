import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// `udp:ADDR:PORT=NAME/IP:PORT` over a fake path: a flow per user peer, its backlog while the
/// mediator port opens, the size rule, replies, and the idle sweep on an injected clock.
final class UDPForwardToMediatorTests: XCTestCase {
    var loop: EmbeddedEventLoop!
    var clock: TestClock!
    var server: FakeDatagramPath!
    var mediator: FakeDatagramPath!
    var recorder: DatagramRecorder!
    var opening: [EventLoopPromise<UDPForwardToMediator.OpenedPort>] = []
    var connected = true
    var closedPorts: [UInt32] = []
    var forward: UDPForwardToMediator!
    var channel: EmbeddedChannel!
    let target = Endpoint(IPAddress("192.168.77.10")!, 5353)
    let user = address("203.0.113.50", 40000)

    override func setUpWithError() throws {
        loop = EmbeddedEventLoop()
        clock = TestClock()
        (server, mediator) = FakeDatagramPath.pair(maxSize: 1000)
        recorder = DatagramRecorder()
        let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        forward = try UDPForwardToMediator(
            spec: ForwardSpec(parsing: "udp:0.0.0.0:5353=acme/192.168.77.10:5353"), registry: registry, eventLoop: loop,
            limits: DatagramFlowLimits(maxBacklog: 4, idleTimeout: .seconds(60), maxFlows: 8), now: { [clock] in clock!.now },
            logger: Logger(label: "test"),
            openPort: { [unowned self] _ in
                guard connected else { return nil }
                let p = loop.makePromise(of: UDPForwardToMediator.OpenedPort.self)
                opening.append(p)
                return p.futureResult
            })
        channel = EmbeddedChannel(handler: forward.sockets[0], loop: loop)
    }

    /// The mediator answers the oldest OPEN with port `id`.
    func open(_ id: UInt32) {
        mediator.attach(portID: id, recorder)
        opening.removeFirst().succeed(.init(portID: id, path: server, close: { [unowned self] in closedPorts.append(id) }))
        loop.run()
    }

    func fromUser(_ peer: SocketAddress, _ bytes: ByteBuffer) throws {
        try channel.writeInbound(AddressedEnvelope(remoteAddress: peer, data: bytes))
    }

    /// What the forward sent to its peers: replies are flushed once per event-loop pass, so the pass
    /// runs first.
    func toUsers() throws -> [AddressedEnvelope<ByteBuffer>] {
        loop.run()
        var out: [AddressedEnvelope<ByteBuffer>] = []
        while let e = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) { out.append(e) }
        return out
    }

    func testBacklogWhileOpeningIsBoundedThenSentInOrder() throws {
        for i in 0..<6 { try fromUser(user, datagram(10, UInt8(i))) }
        XCTAssertEqual(opening.count, 1, "one port per flow")
        open(9)
        XCTAssertEqual(recorder.received, (0..<4).map { .init(portID: 9, peer: target, bytes: datagram(10, UInt8($0))) })
        XCTAssertEqual(forward.sockets[0].flows.drops[.backlogFull], 2)
        try fromUser(user, datagram(10, 9))
        XCTAssertEqual(recorder.received.last, .init(portID: 9, peer: target, bytes: datagram(10, 9)), "open flow: sent at once")
    }

    func testOneSenderWithManySourcePortsHoldsAtMostTheFlowLimit() throws {
        // The attack of issue 8 item 9: each source port would take a mediator port.
        for sourcePort in 0..<100 { try fromUser(address("203.0.113.66", 30000 + sourcePort), datagram(10)) }
        XCTAssertEqual(opening.count, 8, "mediator ports asked for: the forward's limit, not one per source port")
        XCTAssertEqual(forward.sockets[0].flows.drops[.flowLimit], 92)
        for id in 1...8 { open(UInt32(id)) }
        XCTAssertEqual(recorder.received.count, 8)
        try fromUser(address("203.0.113.66", 30000), datagram(10, 1))
        XCTAssertEqual(recorder.received.count, 9, "a sender that holds a flow goes on")
        // Once the flows go quiet and are swept, new peers get in again.
        clock.advance(.seconds(61))
        forward.sockets[0].sweep(now: clock.now)
        XCTAssertEqual(closedPorts.count, 8)
        try fromUser(user, datagram(10))
        XCTAssertEqual(opening.count, 1)
    }

    func testRepliesGoBackToTheirPeer() throws {
        let other = address("203.0.113.51", 40001)
        try fromUser(user, datagram(1))
        try fromUser(other, datagram(2))
        open(1)
        open(2)
        mediator.send(portID: 2, peer: target, bytes: datagram(3))
        mediator.send(portID: 1, peer: target, bytes: datagram(4))
        let out = try toUsers()
        XCTAssertEqual(out.map(\.remoteAddress), [other, user])
        XCTAssertEqual(out.map(\.data), [datagram(3), datagram(4)])
    }

    func testOversizeDroppedAndCounted() throws {
        try fromUser(user, datagram(1001))  // waits in the backlog: the rule applies when it is sent
        open(3)
        try fromUser(user, datagram(1000))
        try fromUser(user, datagram(1001))
        XCTAssertEqual(recorder.received.map(\.bytes.readableBytes), [1000])
        XCTAssertEqual(forward.sockets[0].flows.drops[.oversize], 2)
    }

    func testFullPathDrops() throws {
        try fromUser(user, datagram(1))
        open(3)
        server.canSend = false
        try fromUser(user, datagram(2))
        XCTAssertEqual(recorder.received.count, 1)
        XCTAssertEqual(forward.sockets[0].flows.drops[.pathFull], 1)
    }

    func testIdleFlowsAreSweptAndTheirPortsClosed() throws {
        let other = address("203.0.113.51", 40001)
        try fromUser(user, datagram(1))
        try fromUser(other, datagram(1))
        open(1)
        open(2)
        clock.advance(.seconds(40))
        mediator.send(portID: 2, peer: target, bytes: datagram(3))  // a reply keeps the other flow alive
        clock.advance(.seconds(21))
        forward.sockets[0].sweep(now: clock.now)
        XCTAssertEqual(closedPorts, [1])
        XCTAssertFalse(server.isAttached(1), "a swept flow takes no more replies")
        XCTAssertTrue(server.isAttached(2))
        try fromUser(user, datagram(1))
        XCTAssertEqual(opening.count, 1, "the peer's next datagram opens a new flow")
    }

    func testPortThatOpensAfterItsFlowWasSweptIsClosed() throws {
        try fromUser(user, datagram(1))
        clock.advance(.seconds(61))
        forward.sockets[0].sweep(now: clock.now)
        open(7)
        XCTAssertEqual(closedPorts, [7])
        XCTAssertTrue(recorder.received.isEmpty)
    }

    func testNotConnectedOrFailedOpenDropsAndRetries() throws {
        connected = false
        try fromUser(user, datagram(1))
        XCTAssertEqual(forward.sockets[0].flows.drops[.notOpened], 1)
        connected = true
        try fromUser(user, datagram(1))
        opening.removeFirst().fail(OperationError(code: .limitExceeded, message: "full"))
        loop.run()
        XCTAssertEqual(forward.sockets[0].flows.drops[.notOpened], 2)
        try fromUser(user, datagram(1))
        XCTAssertEqual(opening.count, 1, "a failed flow is forgotten: the next datagram tries again")
    }

    func testSessionEndEndsTheFlows() throws {
        try fromUser(user, datagram(1))
        open(4)
        server.close()
        XCTAssertEqual(forward.sockets[0].flows.count, 0)
        try fromUser(user, datagram(1))
        XCTAssertEqual(opening.count, 1)
    }
}
