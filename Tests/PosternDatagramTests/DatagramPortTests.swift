import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

@testable import PosternMediator

/// The mediator's UDP port over a fake path: the stateful firewall, the policy gates and the size
/// rule, with no socket and no root.
final class DatagramPortTests: XCTestCase {
    let portID: UInt32 = 5
    var server: FakeDatagramPath!
    var mediator: FakeDatagramPath!
    var recorder: DatagramRecorder!
    var port: DatagramPort!
    var channel: EmbeddedChannel!

    func make(_ policy: Policy, maxSize: Int = 1000) throws {
        (server, mediator) = FakeDatagramPath.pair(maxSize: maxSize)
        recorder = DatagramRecorder()
        server.attach(portID: portID, recorder)
        port = DatagramPort(
            portID: portID, path: mediator, policy: policy, local: Endpoint(.anyV4, 4000), logger: Logger(label: "test"))
        channel = EmbeddedChannel(handler: port)
        mediator.attach(portID: portID, port)
    }

    func fromLAN(_ peer: SocketAddress, _ bytes: ByteBuffer) throws {
        try channel.writeInbound(AddressedEnvelope(remoteAddress: peer, data: bytes))
    }

    func sentToLAN() throws -> [AddressedEnvelope<ByteBuffer>] {
        var out: [AddressedEnvelope<ByteBuffer>] = []
        channel.embeddedEventLoop.run()  // the port flushes once per loop pass (DatagramWriteBatcher)
        while let e = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) { out.append(e) }
        return out
    }

    let dns = Endpoint(IPAddress("192.168.77.10")!, 53)
    let dnsAddress = address("192.168.77.10", 53)

    func testReplyAllowedAfterSend() throws {
        try make(Policy(allow: [try AllowRule(parsing: "192.168.77.10/32:53")]))
        server.send(portID: portID, peer: dns, bytes: datagram(20))
        XCTAssertEqual(try sentToLAN().map(\.remoteAddress), [dnsAddress])
        try fromLAN(dnsAddress, datagram(30, 1))
        XCTAssertEqual(recorder.received, [.init(portID: portID, peer: dns, bytes: datagram(30, 1))], "the reply goes to the server")
        XCTAssertEqual(port.drops.total, 0)
    }

    func testUnsolicitedDroppedWithoutListenOrRedirect() throws {
        try make(Policy(allow: [try AllowRule(parsing: "192.168.77.10/32:53")]))
        try fromLAN(address("192.168.77.10", 999), datagram(10))
        try fromLAN(dnsAddress, datagram(10))  // allowed as a destination, but it never got one
        XCTAssertTrue(recorder.received.isEmpty)
        XCTAssertEqual(port.drops[.unsolicited], 2)
    }

    func testUnsolicitedPassesWithListenOrRedirect() throws {
        for policy in [Policy(listenEnabled: true), Policy(redirectEnabled: true)] {
            try make(
                Policy(
                    allow: [try AllowRule(parsing: "10.0.0.0/8")], listenEnabled: policy.listenEnabled,
                    redirectEnabled: policy.redirectEnabled))
            let lan = address("192.168.77.10", 999)
            try fromLAN(lan, datagram(10))
            XCTAssertEqual(recorder.received.map(\.peer), [lan.endpoint!])
            // The server may answer that peer although the allow list does not name it.
            server.send(portID: portID, peer: lan.endpoint!, bytes: datagram(5))
            XCTAssertEqual(try sentToLAN().map(\.remoteAddress), [lan])
        }
    }

    func testDestinationOutsideThePolicyDenied() throws {
        try make(Policy(allow: [try AllowRule(parsing: "192.168.77.10/32:53")]))
        server.send(portID: portID, peer: Endpoint(IPAddress("192.168.77.10")!, 5353), bytes: datagram(20))
        server.send(portID: portID, peer: Endpoint(IPAddress("192.168.77.11")!, 53), bytes: datagram(20))
        XCTAssertTrue(try sentToLAN().isEmpty)
        XCTAssertEqual(port.drops[.denied], 2)
    }

    func testMappedAndProtectedDestinationsDenied() throws {
        // `--allow 192.168.77.0/24 --allow ::/0` on a dual-stack port: the mapped form of loopback
        // or of the metadata service is IPv4, and protected.
        try make(Policy(allow: [try AllowRule(parsing: "192.168.77.0/24"), try AllowRule(parsing: "::/0")]))
        for text in ["::ffff:127.0.0.1", "::127.0.0.1", "::ffff:169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1"] {
            server.send(portID: portID, peer: Endpoint(IPAddress(text)!, 53), bytes: datagram(20))
        }
        XCTAssertTrue(try sentToLAN().isEmpty)
        XCTAssertEqual(port.drops[.denied], 6)
        // The mapped form of an allowed address is allowed, and sent as given.
        server.send(portID: portID, peer: Endpoint(IPAddress("::ffff:192.168.77.10")!, 53), bytes: datagram(20))
        XCTAssertEqual(try sentToLAN().map(\.remoteAddress), [address("::ffff:192.168.77.10", 53)])
        // No --allow at all still keeps the host's own loopback shut.
        try make(Policy())
        server.send(portID: portID, peer: Endpoint(IPAddress("127.0.0.1")!, 53), bytes: datagram(20))
        server.send(portID: portID, peer: Endpoint(IPAddress("::ffff:127.0.0.1")!, 53), bytes: datagram(20))
        XCTAssertTrue(try sentToLAN().isEmpty)
        XCTAssertEqual(port.drops[.denied], 2)
    }

    func testAPeerIsKnownInEitherForm() throws {
        // A dual-stack socket reports an IPv4 sender as ::ffff:a.b.c.d; the server may answer either form.
        try make(Policy(allow: [try AllowRule(parsing: "10.0.0.0/8")], listenEnabled: true))
        try fromLAN(address("::ffff:127.0.0.1", 999), datagram(10))
        XCTAssertEqual(recorder.received.count, 1, "--allow-listen passes the unsolicited datagram")
        server.send(portID: portID, peer: Endpoint(IPAddress("::ffff:127.0.0.1")!, 999), bytes: datagram(5))
        server.send(portID: portID, peer: Endpoint(IPAddress("127.0.0.1")!, 999), bytes: datagram(6))
        XCTAssertEqual(try sentToLAN().map(\.data), [datagram(5), datagram(6)], "a reply to the peer that wrote")
        server.send(portID: portID, peer: Endpoint(IPAddress("127.0.0.1")!, 998), bytes: datagram(7))
        XCTAssertTrue(try sentToLAN().isEmpty, "another loopback port is not that peer")
    }

    func testOversizeDroppedAndCounted() throws {
        try make(Policy(), maxSize: 100)
        server.send(portID: portID, peer: dns, bytes: datagram(1))
        _ = try sentToLAN()
        try fromLAN(dnsAddress, datagram(100))
        try fromLAN(dnsAddress, datagram(101))
        XCTAssertEqual(recorder.received.map(\.bytes.readableBytes), [100])
        XCTAssertEqual(port.drops[.oversize], 1)
    }

    func testFullPathDrops() throws {
        try make(Policy())
        server.send(portID: portID, peer: dns, bytes: datagram(1))
        mediator.canSend = false
        try fromLAN(dnsAddress, datagram(10))
        XCTAssertTrue(recorder.received.isEmpty)
        XCTAssertEqual(port.drops[.pathFull], 1)
    }

    func testClosedPathClosesTheSocket() throws {
        try make(Policy())
        var closed = false
        channel.closeFuture.whenComplete { _ in closed = true }
        mediator.close()
        channel.embeddedEventLoop.run()
        XCTAssertTrue(closed)
    }
}
