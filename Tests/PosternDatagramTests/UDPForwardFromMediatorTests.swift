import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// `udp:NAME/ADDR:PORT=HOST:PORT` over a fake path: a server socket per LAN peer, the target's
/// replies back to that peer, the size rule towards the mediator, and the idle sweep.
final class UDPForwardFromMediatorTests: XCTestCase {
    var loop: EmbeddedEventLoop!
    var clock: TestClock!
    var server: FakeDatagramPath!
    var mediator: FakeDatagramPath!
    var recorder: DatagramRecorder!
    var sockets: [EmbeddedChannel] = []
    var forward: UDPForwardFromMediator!
    let portID: UInt32 = 3
    let target = address("203.0.113.10", 5000)
    let lan = Endpoint(IPAddress("192.168.77.10")!, 41000)

    override func setUpWithError() throws {
        loop = EmbeddedEventLoop()
        clock = TestClock()
        (server, mediator) = FakeDatagramPath.pair(maxSize: 1000)
        recorder = DatagramRecorder()
        mediator.attach(portID: portID, recorder)
        let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        forward = UDPForwardFromMediator(
            spec: try ForwardSpec(parsing: "udp:acme/0.0.0.0:5000=203.0.113.10:5000"), registry: registry, eventLoop: loop,
            limits: DatagramFlowLimits(maxBacklog: 4, idleTimeout: .seconds(60), maxFlows: 4), now: { [clock] in clock!.now },
            logger: Logger(label: "test"),
            openSocket: { [unowned self] _, handler, _ in
                let channel = EmbeddedChannel(handler: handler, loop: loop)
                sockets.append(channel)
                return loop.makeSucceededFuture(channel)
            })
        forward.attach(path: server, portID: portID)
    }

    /// What the forward sent on `socket`: writes are flushed once per event-loop pass, so the pass
    /// runs first.
    func toTarget(_ socket: EmbeddedChannel) throws -> [AddressedEnvelope<ByteBuffer>] {
        loop.run()
        var out: [AddressedEnvelope<ByteBuffer>] = []
        while let e = try socket.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) { out.append(e) }
        return out
    }

    func testEachLANPeerGetsItsOwnSocketAndReplies() throws {
        let other = Endpoint(IPAddress("192.168.77.11")!, 41000)
        mediator.send(portID: portID, peer: lan, bytes: datagram(10, 1))
        mediator.send(portID: portID, peer: lan, bytes: datagram(10, 2))
        mediator.send(portID: portID, peer: other, bytes: datagram(10, 3))
        XCTAssertEqual(sockets.count, 2)
        XCTAssertEqual(try toTarget(sockets[0]).map(\.data), [datagram(10, 1), datagram(10, 2)])
        XCTAssertEqual(try toTarget(sockets[1]).map(\.remoteAddress), [target])
        try sockets[1].writeInbound(AddressedEnvelope(remoteAddress: target, data: datagram(5, 4)))
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: target, data: datagram(5, 5)))
        XCTAssertEqual(
            recorder.received,
            [.init(portID: portID, peer: other, bytes: datagram(5, 4)), .init(portID: portID, peer: lan, bytes: datagram(5, 5))])
    }

    /// A flow's datagrams of one event-loop pass leave together: one flush per socket at its end.
    func testDatagramsOfOnePassAreFlushedTogetherAtItsEnd() throws {
        let other = Endpoint(IPAddress("192.168.77.11")!, 41000)
        mediator.send(portID: portID, peer: lan, bytes: datagram(10, 1))
        mediator.send(portID: portID, peer: other, bytes: datagram(10, 2))
        _ = try toTarget(sockets[0])
        _ = try toTarget(sockets[1])
        for i in 0..<3 {
            mediator.send(portID: portID, peer: lan, bytes: datagram(10, UInt8(10 + i)))
            mediator.send(portID: portID, peer: other, bytes: datagram(10, UInt8(20 + i)))
        }
        XCTAssertNil(try sockets[0].readOutbound(as: AddressedEnvelope<ByteBuffer>.self), "not flushed within the pass")
        XCTAssertEqual(try toTarget(sockets[0]).map(\.data), (10..<13).map { datagram(10, UInt8($0)) })
        XCTAssertEqual(try toTarget(sockets[1]).map(\.data), (20..<23).map { datagram(10, UInt8($0)) })
    }

    func testOnlyTheTargetReachesTheLAN() throws {
        // The attack of issue 8 item 3: a stranger spraying the server's ephemeral ports.
        mediator.send(portID: portID, peer: lan, bytes: datagram(1))
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: address("198.51.100.66", 5000), data: datagram(5, 1)))
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: address("203.0.113.10", 5001), data: datagram(5, 2)))
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: address("::ffff:198.51.100.66", 5000), data: datagram(5, 3)))
        XCTAssertTrue(recorder.received.isEmpty, "nothing but the target's datagrams reaches the LAN peer")
        XCTAssertEqual(forward.current?.flows.drops[.unsolicited], 3)
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: target, data: datagram(5, 4)))
        XCTAssertEqual(recorder.received, [.init(portID: portID, peer: lan, bytes: datagram(5, 4))])
    }

    func testLANPeersAreCappedPerForward() throws {
        for host in 0..<10 {
            mediator.send(portID: portID, peer: Endpoint(IPAddress("192.168.77.\(100 + host)")!, 41000), bytes: datagram(1))
        }
        XCTAssertEqual(sockets.count, 4, "server sockets: the forward's limit")
        XCTAssertEqual(forward.current?.flows.drops[.flowLimit], 6)
        mediator.send(portID: portID, peer: Endpoint(IPAddress("192.168.77.100")!, 41000), bytes: datagram(2))
        XCTAssertEqual(try toTarget(sockets[0]).count, 2, "a peer with a flow goes on")
    }

    func testOversizeFromTheTargetDroppedAndCounted() throws {
        mediator.send(portID: portID, peer: lan, bytes: datagram(1))
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: target, data: datagram(1000)))
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: target, data: datagram(1001)))
        XCTAssertEqual(recorder.received.map(\.bytes.readableBytes), [1000])
        XCTAssertEqual(forward.current?.flows.drops[.oversize], 1)
    }

    func testFullPathDrops() throws {
        mediator.send(portID: portID, peer: lan, bytes: datagram(1))
        server.canSend = false
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: target, data: datagram(10)))
        XCTAssertTrue(recorder.received.isEmpty)
        XCTAssertEqual(forward.current?.flows.drops[.pathFull], 1)
    }

    func testIdleSocketsAreSwept() throws {
        mediator.send(portID: portID, peer: lan, bytes: datagram(1))
        var closed = false
        sockets[0].closeFuture.whenComplete { _ in closed = true }
        clock.advance(.seconds(30))
        try sockets[0].writeInbound(AddressedEnvelope(remoteAddress: target, data: datagram(10)))  // a reply counts
        clock.advance(.seconds(60))
        forward.sweep(now: clock.now)
        loop.run()
        XCTAssertFalse(closed)
        clock.advance(.seconds(1))
        forward.sweep(now: clock.now)
        loop.run()
        XCTAssertTrue(closed)
        mediator.send(portID: portID, peer: lan, bytes: datagram(1))
        XCTAssertEqual(sockets.count, 2, "the peer's next datagram opens a new socket")
    }

    func testSessionEndClosesTheSockets() throws {
        mediator.send(portID: portID, peer: lan, bytes: datagram(1))
        var closed = false
        sockets[0].closeFuture.whenComplete { _ in closed = true }
        server.close()
        loop.run()
        XCTAssertTrue(closed)
        XCTAssertNil(forward.current)
    }
}
