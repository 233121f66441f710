import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// ARP parsing and answers against frames captured in the lab on lanhost's eth0 (the mediator host
/// 192.168.77.2 at 82:4f:01:d9:67:fc asks for lanhost 192.168.77.10 at 9e:ff:03:8c:6d:c5), and the
/// neighbour cache on an injected clock.
final class ARPTests: XCTestCase {
    let mediatorMAC: [UInt8] = [0x82, 0x4f, 0x01, 0xd9, 0x67, 0xfc]
    let lanhostMAC: [UInt8] = [0x9e, 0xff, 0x03, 0x8c, 0x6d, 0xc5]
    let mediator = IPAddress("192.168.77.2")!
    let lanhost = IPAddress("192.168.77.10")!
    let request = ICMPMessageTests.hex(
        "ffff ffff ffff 824f 01d9 67fc 0806 0001 0800 0604 0001 824f 01d9 67fc c0a8 4d02 0000 0000 0000 c0a8 4d0a")
    let reply = ICMPMessageTests.hex(
        "824f 01d9 67fc 9eff 038c 6dc5 0806 0001 0800 0604 0002 9eff 038c 6dc5 c0a8 4d0a 824f 01d9 67fc c0a8 4d02")

    func testParsesTheCapturedRequestAndAnswersItAsLanhostDid() throws {
        let parsed = try ARPPacket(frame: request)
        XCTAssertEqual(parsed.operation, .request)
        XCTAssertEqual(parsed.senderMAC, mediatorMAC)
        XCTAssertEqual(parsed.senderIP, mediator)
        XCTAssertEqual(parsed.targetIP, lanhost)
        XCTAssertEqual(parsed.answer(for: lanhost, mac: lanhostMAC), reply, "byte for byte what the kernel sent")
        XCTAssertNil(parsed.answer(for: IPAddress("192.168.77.50")!, mac: lanhostMAC), "not our address")
        XCTAssertNil(parsed.answer(for: lanhost, mac: mediatorMAC), "our own request coming back")
        let parsedReply = try ARPPacket(frame: reply)
        XCTAssertEqual(parsedReply.operation, .reply)
        XCTAssertNil(parsedReply.answer(for: mediator, mac: mediatorMAC), "a reply is not answered")
        XCTAssertEqual(parsed.frame(from: mediatorMAC, to: ARPPacket.broadcast), request)
        // Ethernet padding to 60 bytes changes nothing.
        XCTAssertEqual(try ARPPacket(frame: request + [UInt8](repeating: 0, count: 18)), parsed)
    }

    func testAnnouncement() throws {
        let a = ARPPacket.announcement(of: IPAddress("192.168.77.50")!, mac: mediatorMAC)
        XCTAssertEqual(Array(a[0..<6]), ARPPacket.broadcast)
        let parsed = try ARPPacket(frame: a)
        XCTAssertEqual(parsed.operation, .request)
        XCTAssertEqual(parsed.senderIP, IPAddress("192.168.77.50"))
        XCTAssertEqual(parsed.targetIP, parsed.senderIP)
        XCTAssertEqual(parsed.senderMAC, mediatorMAC)
    }

    func testForgedAndDamagedFramesAreRefused() {
        func assertThrows(_ frame: [UInt8], _ error: ARPPacket.ParseError, line: UInt = #line) {
            XCTAssertThrowsError(try ARPPacket(frame: frame), line: line) { XCTAssertEqual($0 as? ARPPacket.ParseError, error, line: line) }
        }
        assertThrows(Array(request.prefix(41)), .tooShort(41))
        var f = request
        f[12] = 0x08
        f[13] = 0x00
        assertThrows(f, .notARP(etherType: 0x0800))
        f = request
        f[18] = 8  // 8-byte hardware addresses
        assertThrows(f, .unsupported)
        f = request
        f[21] = 3  // RARP request
        assertThrows(f, .badOperation(3))
        f = request
        f[22] = 0x01  // a multicast sender
        assertThrows(f, .badSenderMAC)
        f = request
        for i in 22..<28 { f[i] = 0xff }
        assertThrows(f, .badSenderMAC)
        for i in 22..<28 { f[i] = 0 }
        assertThrows(f, .badSenderMAC)
        for n in 0..<request.count { _ = try? ARPPacket(frame: Array(request.prefix(n))) }
    }

    func testNeighbourCacheExpiresAndStaysBounded() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var cache = NeighbourCache(lifetime: .seconds(30), capacity: 3)
        cache.learn(lanhost, at: lanhostMAC, now: t0)
        XCTAssertEqual(cache.lookup(lanhost, now: t0 + .seconds(29)), lanhostMAC)
        XCTAssertNil(cache.lookup(lanhost, now: t0 + .seconds(30)), "expired")
        // Confirming again restarts the lifetime; a new MAC replaces the old one.
        cache.learn(lanhost, at: mediatorMAC, now: t0 + .seconds(20))
        XCTAssertEqual(cache.lookup(lanhost, now: t0 + .seconds(45)), mediatorMAC)
        // Broadcast, multicast and zero MACs are never learned.
        cache.learn(mediator, at: ARPPacket.broadcast, now: t0)
        cache.learn(mediator, at: [0x01, 0, 0x5e, 0, 0, 1], now: t0)
        cache.learn(mediator, at: [0, 0, 0, 0, 0, 0], now: t0)
        XCTAssertNil(cache.lookup(mediator, now: t0))
        // A host claiming a whole subnet: the cache keeps `capacity` entries, the freshest.
        for i in 0..<100 {
            cache.learn(.v4(0xc0a8_4d00 | UInt32(100 + i)), at: lanhostMAC, now: t0 + .seconds(21) + .milliseconds(Int64(i)))
        }
        XCTAssertEqual(cache.count, 3)
        XCTAssertNotNil(cache.lookup(.v4(0xc0a8_4d00 | 199), now: t0 + .seconds(22)))
        XCTAssertNil(cache.lookup(.v4(0xc0a8_4d00 | 100), now: t0 + .seconds(22)))
        cache.expire(now: t0 + .seconds(60))
        XCTAssertEqual(cache.count, 0)
    }
}
