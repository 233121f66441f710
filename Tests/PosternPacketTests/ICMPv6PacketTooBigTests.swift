import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// ICMPv6 "packet too big" (RFC 4443 §3.2) for IPv6 packets larger than TUN mode carries: addressing,
/// the MTU field, the checksum over the pseudo-header (verified by an independent sum), the quote cut
/// to keep the error within 1,280 bytes, and the packets that must never get one; garbage never crashes.
final class ICMPv6PacketTooBigTests: XCTestCase {
    typealias P = IPv6TestPackets

    func make(_ bytes: [UInt8], mtu: Int = 1400) -> [UInt8]? {
        ICMPv6PacketTooBig.make(for: ByteBuffer(bytes: bytes), mtu: mtu).map { Array($0.readableBytesView) }
    }

    func testAnOversizeEchoGetsPacketTooBigBackToItsSender() throws {
        let original = P.echo("2001:db8:113::20", "fd00:77::10", size: 1452)
        XCTAssertEqual(original.count, 1500)
        let error = try XCTUnwrap(make(original))
        XCTAssertEqual(error.count, 1280, "the quote is cut so the error fits the IPv6 minimum MTU")
        XCTAssertEqual(error[0] >> 4, 6)
        XCTAssertEqual(Int(error[4]) << 8 | Int(error[5]), error.count - 40, "payload length")
        XCTAssertEqual(error[6], 58)
        XCTAssertEqual(error[7], 64)
        XCTAssertEqual(Array(error[8..<24]), IPAddress("fd00:77::10")!.bytes, "in the name of the destination")
        XCTAssertEqual(Array(error[24..<40]), IPAddress("2001:db8:113::20")!.bytes, "back to the source")
        XCTAssertEqual(error[40], 2)
        XCTAssertEqual(error[41], 0)
        XCTAssertEqual(Array(error[44..<48]), [0, 0, 0x05, 0x78], "MTU 1400")
        XCTAssertTrue(P.upperLayerVerifies(error), "ICMPv6 checksum over the pseudo-header")
        XCTAssertEqual(Array(error[48...]), Array(original.prefix(1280 - 48)))
        let parsed = try IPPacket(parsing: ByteBuffer(bytes: error))
        XCTAssertEqual(parsed.totalLength, error.count)
        XCTAssertEqual(parsed.version, .v6)
    }

    func testASmallPacketIsQuotedWhole() throws {
        let original = P.packet("2001:db8::1", "fd00:77::10", next: 17, payload: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let error = try XCTUnwrap(make(original, mtu: 1280))
        XCTAssertEqual(Array(error[48...]), original)
        XCTAssertEqual(Array(error[44..<48]), [0, 0, 0x05, 0x00])
        XCTAssertTrue(P.upperLayerVerifies(error))
    }

    func testPacketsThatMustNotGetAnError() {
        // An ICMPv6 error (type < 128), here a packet too big itself: errors never answer errors.
        let error = make(P.echo("2001:db8::1", "fd00:77::10", size: 100))!
        XCTAssertNil(make(error))
        XCTAssertNil(make(P.packet("2001:db8::1", "fd00:77::10", next: 58, payload: [1, 0, 0, 0, 0, 0, 0, 0])))
        XCTAssertNil(make(P.packet("2001:db8::1", "fd00:77::10", next: 58, payload: [])), "ICMPv6 without a type")
        // Sources and destinations that are not one unicast host.
        XCTAssertNil(make(P.echo("::", "fd00:77::10", size: 8)))
        XCTAssertNil(make(P.echo("::1", "fd00:77::10", size: 8)))
        XCTAssertNil(make(P.echo("ff02::1", "fd00:77::10", size: 8)))
        XCTAssertNil(make(P.echo("2001:db8::1", "ff02::1", size: 8)))
        // Not IPv6, or not a whole packet.
        XCTAssertNil(make([0x45] + [UInt8](repeating: 0, count: 39)))
        XCTAssertNil(make(Array(P.echo("2001:db8::1", "fd00:77::10", size: 8).dropLast())))
        XCTAssertNil(make([]))
        // An echo request, an ICMPv6 informational message, does get one.
        XCTAssertNotNil(make(P.echo("2001:db8::1", "fd00:77::10", size: 8)))
    }

    func testFuzzNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let good = P.echo("2001:db8::1", "fd00:77::10", size: 64)
        for _ in 0..<3000 {
            var b = good
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) }
            if let e = make(b) {
                XCTAssertTrue(P.upperLayerVerifies(e))
                XCTAssertLessThanOrEqual(e.count, 1280)
            }
            _ = make((0..<Int.random(in: 0...120, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        }
    }
}
