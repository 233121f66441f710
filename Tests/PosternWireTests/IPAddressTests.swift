import PosternWire
import XCTest

final class IPAddressTests: XCTestCase {
    func testParsesIPv4() {
        XCTAssertEqual(IPAddress("192.0.2.1"), .v4(0xc000_0201))
        XCTAssertEqual(IPAddress("0.0.0.0"), .anyV4)
        XCTAssertEqual(IPAddress("255.255.255.255"), .v4(.max))
        XCTAssertEqual(IPAddress("192.168.77.10")?.bytes, [192, 168, 77, 10])
    }

    func testParsesIPv6PlainAndBracketed() {
        let expected: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
        XCTAssertEqual(IPAddress("2001:db8::1"), .v6(expected))
        XCTAssertEqual(IPAddress("[2001:db8::1]"), .v6(expected))
        XCTAssertEqual(IPAddress("::"), .anyV6)
        XCTAssertEqual(IPAddress("[::]"), .anyV6)
        XCTAssertEqual(IPAddress("::ffff:10.0.0.1")?.bytes, [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 10, 0, 0, 1])
        XCTAssertEqual(IPAddress("FD00::10"), IPAddress("fd00::10"))
        XCTAssertEqual(IPAddress(Substring("fd00::10")), IPAddress("fd00::10"))
    }

    func testNormalizedUnwrapsMappedAndCompatibleIPv4() {
        func n(_ s: String) -> IPAddress { IPAddress(s)!.normalized }
        XCTAssertEqual(n("::ffff:127.0.0.1"), IPAddress("127.0.0.1"))
        XCTAssertEqual(n("[::ffff:7f00:1]"), IPAddress("127.0.0.1"), "the hex spelling is the same address")
        XCTAssertEqual(n("::ffff:169.254.169.254"), IPAddress("169.254.169.254"))
        XCTAssertEqual(n("::ffff:0.0.0.0"), .anyV4)
        XCTAssertEqual(n("::ffff:255.255.255.255"), .v4(.max))
        XCTAssertEqual(n("::127.0.0.1"), IPAddress("127.0.0.1"), "IPv4-compatible")
        XCTAssertEqual(n("::192.168.77.10"), IPAddress("192.168.77.10"))
        XCTAssertEqual(n("::0.0.0.2"), IPAddress("0.0.0.2"))
        // Not IPv4 in disguise: stays itself.
        for text in [
            "::", "::1", "fd00::1", "2001:db8::ffff:127.0.0.1", "::fffe:127.0.0.1", "1::ffff:127.0.0.1", "64:ff9b::7f00:1", "fe80::1",
        ] {
            XCTAssertEqual(n(text), IPAddress(text), text)
            XCTAssertTrue(n(text).isIPv6, text)
        }
        for text in ["127.0.0.1", "0.0.0.0", "192.168.77.10"] {
            XCTAssertEqual(n(text), IPAddress(text), "IPv4 is itself")
        }
        XCTAssertEqual(IPAddress("::ffff:10.0.0.1")!.normalized.normalized, IPAddress("10.0.0.1"), "idempotent")
    }

    func testRejectsInvalid() {
        for text in [
            "", " ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-1", "01.2.3.4x", "example.com", "fd00::g", "1::2::3", "[fd00::1",
            "fd00::1]", "[]", "[[::1]]", " 1.2.3.4", "1.2.3.4 ", "::1%eth0", "12345::",
        ] {
            XCTAssertNil(IPAddress(text), "'\(text)'")
        }
    }

    func testFormats() {
        XCTAssertEqual(IPAddress.v4(0xc0a8_4d0a).description, "192.168.77.10")
        XCTAssertEqual(IPAddress.anyV4.description, "0.0.0.0")
        XCTAssertEqual(IPAddress("fd00:0:0:0:0:0:0:10")!.description, "fd00::10")
        XCTAssertEqual(IPAddress.anyV6.description, "::")
        XCTAssertEqual(IPAddress("2001:DB8:0:0:1:0:0:1")!.description, "2001:db8::1:0:0:1")
        XCTAssertEqual(IPAddress("fd00::10")!.bracketed, "[fd00::10]")
        XCTAssertEqual(IPAddress("10.0.0.1")!.bracketed, "10.0.0.1")
    }

    func testFormatParseRoundTrip() {
        var rng = SeededGenerator(seed: 99)
        for _ in 0..<500 {
            let v4 = IPAddress.v4(UInt32.random(in: 0...(.max), using: &rng))
            XCTAssertEqual(IPAddress(v4.description), v4)
            let v6 = IPAddress.v6((0..<16).map { _ in Bool.random(using: &rng) ? 0 : UInt8.random(in: 0...255, using: &rng) })
            XCTAssertEqual(IPAddress(v6.description), v6, v6.description)
            XCTAssertEqual(IPAddress(v6.bracketed), v6)
        }
    }

    func testFromBytes() {
        XCTAssertEqual(IPAddress(bytes: [10, 0, 0, 1]), IPAddress("10.0.0.1"))
        XCTAssertEqual(IPAddress(bytes: [UInt8](repeating: 0, count: 15) + [1]), IPAddress("::1"))
        XCTAssertNil(IPAddress(bytes: []))
        XCTAssertNil(IPAddress(bytes: [1, 2, 3]))
        XCTAssertNil(IPAddress(bytes: [UInt8](repeating: 0, count: 17)))
    }

    func testProperties() {
        XCTAssertTrue(IPAddress("::1")!.isIPv6)
        XCTAssertFalse(IPAddress("127.0.0.1")!.isIPv6)
        XCTAssertTrue(IPAddress.anyV4.isUnspecified)
        XCTAssertTrue(IPAddress.anyV6.isUnspecified)
        XCTAssertFalse(IPAddress("::1")!.isUnspecified)
    }

    func testHost() {
        XCTAssertEqual(PosternWire.Host("10.0.0.1"), .ip(ipv4("10.0.0.1")))
        XCTAssertEqual(PosternWire.Host("[fd00::1]"), .ip(ipv6("fd00::1")))
        XCTAssertEqual(PosternWire.Host("intranet.lan"), .name("intranet.lan"))
        XCTAssertEqual(PosternWire.Host.ip(ipv6("fd00::1")).description, "[fd00::1]")
        XCTAssertEqual(PosternWire.Host.name("x.lan").description, "x.lan")
    }
}
