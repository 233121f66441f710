import PosternCore
import PosternWire
import XCTest

/// The PROXY protocol header toward a forward's target, checked against HAProxy's spec
/// (proxy-protocol.txt): its v1 examples character by character, v2 byte by byte.
final class ProxyHeaderTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }
    private func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    func testV1TCP4IsTheSpecsExample() {
        let h = ProxyHeader.encode(.v1, source: (ip("192.168.0.1"), 56324), destination: (ip("192.168.0.11"), 443))
        XCTAssertEqual(text(h), "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")
    }

    func testV1TCP6() {
        let h = ProxyHeader.encode(.v1, source: (ip("2001:db8::20"), 40000), destination: (ip("2001:db8:0:0::1"), 8080))
        XCTAssertEqual(text(h), "PROXY TCP6 2001:db8::20 2001:db8::1 40000 8080\r\n")
    }

    func testV1LongestLineFitsTheSpecsBound() {
        // The spec's worst case is 107 bytes including CRLF: two full IPv6 addresses, two 5-digit ports.
        let full = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        let h = ProxyHeader.encode(.v1, source: (full, 65535), destination: (full, 65535))
        XCTAssertEqual(h.count, 104)
        XCTAssertLessThanOrEqual(h.count, 107)
        XCTAssertTrue(text(h).hasSuffix("65535 65535\r\n"))
    }

    func testV1WithMixedOrUnknownFamiliesSaysUnknown() {
        XCTAssertEqual(text(ProxyHeader.encode(.v1, source: (ip("10.0.0.1"), 1), destination: (ip("fd00::1"), 2))), "PROXY UNKNOWN\r\n")
        XCTAssertEqual(text(ProxyHeader.encode(.v1, source: nil, destination: (ip("10.0.0.1"), 2))), "PROXY UNKNOWN\r\n")
    }

    func testMappedAddressesOfADualStackSocketAreWrittenAsIPv4() {
        let h = ProxyHeader.encode(.v1, source: (ip("::ffff:203.0.113.20"), 5555), destination: (ip("::ffff:198.51.100.1"), 80))
        XCTAssertEqual(text(h), "PROXY TCP4 203.0.113.20 198.51.100.1 5555 80\r\n")
        let v2 = ProxyHeader.encode(.v2, source: (ip("::ffff:203.0.113.20"), 5555), destination: (ip("::ffff:198.51.100.1"), 80))
        XCTAssertEqual(v2[13], 0x11, "TCP over IPv4")
    }

    func testV2IPv4ByteByByte() {
        let h = ProxyHeader.encode(.v2, source: (ip("203.0.113.20"), 0xC350), destination: (ip("198.51.100.1"), 8080))
        XCTAssertEqual(
            h,
            [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]  // signature "\r\n\r\n\0\r\nQUIT\n"
                + [0x21]  // version 2, command PROXY
                + [0x11]  // AF_INET, STREAM
                + [0x00, 0x0C]  // 12 bytes of addresses follow
                + [203, 0, 113, 20] + [198, 51, 100, 1]  // source, destination
                + [0xC3, 0x50] + [0x1F, 0x90])  // ports 50000, 8080 in network order
    }

    func testV2IPv6ByteByByte() {
        let src = ip("2001:db8::20")
        let dst = ip("fd00::1")
        let h = ProxyHeader.encode(.v2, source: (src, 1), destination: (dst, 443))
        XCTAssertEqual(Array(h[0..<12]), ProxyHeader.v2Signature)
        XCTAssertEqual(Array(h[12..<16]), [0x21, 0x21, 0x00, 36], "PROXY, AF_INET6 STREAM, 36 bytes")
        XCTAssertEqual(Array(h[16..<32]), src.bytes)
        XCTAssertEqual(Array(h[32..<48]), dst.bytes)
        XCTAssertEqual(Array(h[48..<52]), [0x00, 0x01, 0x01, 0xBB])
        XCTAssertEqual(h.count, 16 + 36)
    }

    func testV2WithoutAddressesIsLocal() {
        XCTAssertEqual(ProxyHeader.encode(.v2, source: nil, destination: nil), ProxyHeader.v2Signature + [0x20, 0x00, 0x00, 0x00])
        XCTAssertEqual(
            ProxyHeader.encode(.v2, source: (ip("10.0.0.1"), 1), destination: (ip("fd00::1"), 2)),
            ProxyHeader.v2Signature + [0x20, 0x00, 0x00, 0x00])
    }

    func testTheV2SignatureCannotStartAV1Line() {
        // The spec chose the signature so a receiver tells the versions apart by the first bytes.
        XCTAssertNotEqual(Array(ProxyHeader.v2Signature.prefix(5)), Array("PROXY".utf8))
        XCTAssertEqual(ProxyHeader.v2Signature.count, 12)
    }
}
