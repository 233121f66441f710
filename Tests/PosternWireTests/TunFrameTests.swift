import NIOCore
import PosternWire
import XCTest

/// TUN, TUN_READY and PACKET (docs/protocol.md §10; vectors in §8.25-8.27) and the prefix arithmetic
/// TUN mode's policy rests on.
final class TunFrameTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    func testRoundTrips() {
        assertRoundTrip(.tun(.init(requestID: 1, mtu: 576)))
        assertRoundTrip(
            .tunReady(
                .init(
                    requestID: 7, mtu: 9000, address: Prefix(parsing: "fd00:77::50/64")!,
                    prefixes: (0..<64).map { Prefix(address: .v4(UInt32($0) << 8), prefixLength: 24) })))
        assertRoundTrip(.tunReady(.init(requestID: 7, mtu: 1400, address: Prefix(parsing: "10.0.0.5/8")!, prefixes: [])))
        assertRoundTrip(.packet(.init(bytes: ByteBuffer())))
        assertRoundTrip(.packet(.init(bytes: ByteBuffer(bytes: [UInt8](repeating: 0x45, count: 1400)))))
    }

    /// A sender never writes more than 64 prefixes; a receiver refuses a count above it before reading on.
    func testPrefixCountIsBounded() {
        var bytes: [UInt8] = [0, 0, 0, 9, 0x05, 0x78, 1, 192, 168, 77, 50, 24, 0, 65]
        assertDecodeThrows(rawFrame(type: 0x1a, payload: bytes), .invalidValue(field: "prefix count", value: "65"))
        // A count larger than what follows is truncated, never a large allocation.
        bytes[13] = 2
        bytes[12] = 0
        assertDecodeThrows(rawFrame(type: 0x1a, payload: bytes + [1, 10, 0, 0, 0, 8]), .truncated(frame: "TUN_READY"))
        let ready = Frame.tunReady(
            .init(
                requestID: 1, mtu: 1400, address: Prefix(parsing: "192.168.77.50/24")!,
                prefixes: (0..<100).map { Prefix(address: .v4(UInt32($0) << 8), prefixLength: 24) }))
        guard case .tunReady(let decoded)? = try? decodeOne(encode(ready)) else { return XCTFail("did not decode") }
        XCTAssertEqual(decoded.prefixes.count, 64)
    }

    func testForgedFieldsAreRefused() {
        // A prefix length past the family's width, a name where an address belongs, bytes after TUN.
        assertDecodeThrows(
            rawFrame(type: 0x1a, payload: [0, 0, 0, 9, 0x05, 0x78, 1, 192, 168, 77, 50, 33, 0, 0]),
            .invalidValue(field: "prefix length", value: "33"))
        assertDecodeThrows(
            rawFrame(type: 0x1a, payload: [0, 0, 0, 9, 0x05, 0x78, 3, 1, 0x61, 24, 0, 0]),
            .invalidValue(field: "address type", value: "name not allowed here"))
        // One byte after TUN is its flags (§10.1); a second one is trailing.
        assertDecodeThrows(rawFrame(type: 0x15, payload: [0, 0, 0, 9, 0x05, 0x78, 0, 0]), .trailingBytes(frame: "TUN", count: 1))
        assertDecodeThrows(rawFrame(type: 0x15, payload: [0, 0, 0, 9, 0x05]), .truncated(frame: "TUN"))
    }

    /// IPv4 containment is computed on integers (TUN mode's per-packet policy): it must agree with
    /// the byte-wise definition for every prefix length, at the edges and at random, and never
    /// mix families.
    func testIPv4ContainmentAgreesWithTheBytewiseRule() {
        func bytewise(_ net: [UInt8], _ length: Int, _ a: [UInt8]) -> Bool {
            (0..<4).allSatisfy { i in
                let bits = max(0, min(8, length - i * 8))
                let m: UInt8 = bits == 8 ? 0xff : ~(0xff >> UInt8(bits))
                return net[i] & m == a[i] & m
            }
        }
        var rng = SystemRandomNumberGenerator()
        for length in 0...32 {
            for _ in 0..<200 {
                let net = (0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) }
                // Half the addresses share the network's first bytes, so both answers occur.
                var a = (0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if Bool.random(using: &rng) { a = Array(net.prefix(length / 8)) + a.dropFirst(length / 8) }
                let prefix = Prefix(address: IPAddress(bytes: net)!, prefixLength: UInt8(length))
                XCTAssertEqual(prefix.contains(IPAddress(bytes: a)!), bytewise(net, length, a), "\(net)/\(length) \(a)")
            }
        }
        XCTAssertTrue(Prefix(parsing: "10.0.0.1/32")!.contains(IPAddress("10.0.0.1")!))
        XCTAssertFalse(Prefix(parsing: "10.0.0.1/32")!.contains(IPAddress("10.0.0.0")!))
        XCTAssertTrue(Prefix(parsing: "128.0.0.0/1")!.contains(IPAddress("255.255.255.255")!))
        XCTAssertFalse(Prefix(parsing: "128.0.0.0/1")!.contains(IPAddress("127.255.255.255")!))
        XCTAssertFalse(Prefix(parsing: "0.0.0.0/0")!.contains(IPAddress("::")!))
        XCTAssertFalse(Prefix(parsing: "::/0")!.contains(IPAddress("10.0.0.1")!))
    }

    func testPrefixParsingAndContainment() throws {
        let lan = try XCTUnwrap(Prefix(parsing: "192.168.77.50/24"))
        XCTAssertEqual(lan.network, Prefix(parsing: "192.168.77.0/24"))
        XCTAssertTrue(lan.contains(IPAddress("192.168.77.255")!))
        XCTAssertTrue(lan.contains(IPAddress("192.168.77.0")!))
        XCTAssertFalse(lan.contains(IPAddress("192.168.78.1")!))
        XCTAssertFalse(lan.contains(IPAddress("fd00::1")!))
        XCTAssertEqual(Prefix(parsing: "10.1.2.3"), Prefix(address: IPAddress("10.1.2.3")!, prefixLength: 32))
        XCTAssertEqual(Prefix(parsing: "fd00::1"), Prefix(address: IPAddress("fd00::1")!, prefixLength: 128))
        XCTAssertTrue(Prefix(parsing: "0.0.0.0/0")!.contains(IPAddress("203.0.113.9")!))
        for bad in ["", "/24", "192.168.77.0/33", "192.168.77.0/-1", "192.168.77.0/24/1", "fd00::/129", "host/24", "1.2.3.4/"] {
            XCTAssertNil(Prefix(parsing: bad), bad)
        }
    }

    func testOverlap() {
        func p(_ s: String) -> Prefix { Prefix(parsing: s)! }
        XCTAssertTrue(p("192.168.77.0/24").overlaps(p("192.168.77.128/25")))
        XCTAssertTrue(p("192.168.77.128/25").overlaps(p("192.168.0.0/16")))
        XCTAssertTrue(p("192.168.77.50/32").overlaps(p("192.168.77.0/24")))
        XCTAssertFalse(p("192.168.77.0/25").overlaps(p("192.168.77.128/25")))
        XCTAssertFalse(p("192.168.77.0/24").overlaps(p("192.168.78.0/24")))
        XCTAssertFalse(p("0.0.0.0/0").overlaps(p("::/0")))
        XCTAssertTrue(p("0.0.0.0/0").overlaps(p("10.0.0.0/8")))
    }

    func testCapabilityBitTwoOffersTunMode() {
        XCTAssertEqual(MediatorEnvironment.Capabilities.tunOffered.rawValue, 0x4)
        let e = MediatorEnvironment(hostname: "h", softwareVersion: "v", capabilities: [.tun, .tunOffered])
        guard case .environment(let back)? = try? decodeOne(encode(.environment(e))) else { return XCTFail("did not decode") }
        XCTAssertTrue(back.capabilities.contains(.tunOffered))
    }
}
