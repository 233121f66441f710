import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternServer

/// A `udp:` forward's `allow=` and `rate=` (over the fake path and an injected clock): outsiders'
/// datagrams are dropped before any mediator port is asked for; datagrams over the rate are dropped,
/// each way, and counted.
final class UDPForwardOptionsTests: XCTestCase {
    var loop: EmbeddedEventLoop!
    var clock: TestClock!
    var server: FakeDatagramPath!
    var mediator: FakeDatagramPath!
    var recorder: DatagramRecorder!
    var opening: [EventLoopPromise<UDPForwardToMediator.OpenedPort>] = []
    var forward: UDPForwardToMediator!
    var channel: EmbeddedChannel!
    let target = Endpoint(IPAddress("192.168.77.10")!, 5353)
    let user = address("203.0.113.50", 40000)

    func make(_ spec: String) throws {
        loop = EmbeddedEventLoop()
        clock = TestClock()
        (server, mediator) = FakeDatagramPath.pair(maxSize: 1000)
        recorder = DatagramRecorder()
        let registry = MediatorRegistry(events: EventLog(clock: { Date(timeIntervalSince1970: 0) }), logger: Logger(label: "test"))
        forward = try UDPForwardToMediator(
            spec: ForwardSpec(parsing: spec), registry: registry, eventLoop: loop,
            limits: DatagramFlowLimits(maxBacklog: 4, idleTimeout: .seconds(60), maxFlows: 8), now: { [clock] in clock!.now },
            logger: Logger(label: "test"),
            openPort: { [unowned self] _ in
                let p = loop.makePromise(of: UDPForwardToMediator.OpenedPort.self)
                opening.append(p)
                return p.futureResult
            })
        channel = EmbeddedChannel(handler: forward.sockets[0], loop: loop)
    }

    func open(_ id: UInt32) {
        mediator.attach(portID: id, recorder)
        opening.removeFirst().succeed(.init(portID: id, path: server, close: {}))
        loop.run()
    }

    func fromUser(_ peer: SocketAddress, _ bytes: ByteBuffer) throws {
        try channel.writeInbound(AddressedEnvelope(remoteAddress: peer, data: bytes))
    }

    func toUsers() throws -> [AddressedEnvelope<ByteBuffer>] {
        loop.run()
        var out: [AddressedEnvelope<ByteBuffer>] = []
        while let e = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) { out.append(e) }
        return out
    }

    func testOutsidersAreDroppedBeforeAnyPortIsOpenedAndCounted() throws {
        try make("udp:0.0.0.0:5353=acme/192.168.77.10:5353,allow=203.0.113.0/24,allow=2001:db8::/32")
        for port in 0..<20 { try fromUser(address("198.51.100.7", 30000 + port), datagram(100)) }
        try fromUser(address("2001:db9::1", 4000), datagram(100))
        XCTAssertTrue(opening.isEmpty, "no mediator port for a sender outside the list")
        XCTAssertEqual(forward.counters.policyDenials, 21)
        XCTAssertEqual(forward.counters.bytesToMediator, 0)
        XCTAssertEqual(forward.sockets[0].flows.count, 0)
        try fromUser(user, datagram(100))
        try fromUser(address("2001:db8::5", 4000), datagram(100))
        XCTAssertEqual(opening.count, 2, "listed senders get their flows")
        open(7)
        XCTAssertEqual(recorder.received.count, 1)
        XCTAssertEqual(forward.counters.policyDenials, 21)
    }

    func testOverTheRateDatagramsAreDroppedAndCountedEachWay() throws {
        try make("udp:0.0.0.0:5353=acme/192.168.77.10:5353,rate=100K")  // a 64 KiB burst
        try fromUser(user, datagram(1000))
        open(9)
        for _ in 0..<99 { try fromUser(user, datagram(1000)) }
        XCTAssertEqual(recorder.received.count, 65, "65,536 bytes of burst: 65 datagrams of 1,000")
        XCTAssertEqual(forward.counters.rateLimitDrops, 35)
        XCTAssertEqual(forward.counters.bytesToMediator, 65_000, "dropped datagrams are not counted as carried")
        clock.advance(.milliseconds(10))  // 1,000 bytes more at 100 kB/s
        try fromUser(user, datagram(1000))
        try fromUser(user, datagram(1000))
        XCTAssertEqual(recorder.received.count, 66)
        XCTAssertEqual(forward.counters.rateLimitDrops, 36)

        // Replies have a bucket of their own.
        for _ in 0..<70 { mediator.send(portID: 9, peer: target, bytes: datagram(1000)) }
        XCTAssertEqual(try toUsers().count, 65)
        XCTAssertEqual(forward.counters.rateLimitDrops, 41)
        XCTAssertEqual(forward.counters.bytesFromMediator, 65_000)
    }
}
