import PosternCore
import PosternWire
import XCTest

/// `--allow CIDR[:PORTS]` rules of the mediator's policy (DESIGN.md, "Security stance").
final class AllowRuleTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    private func allows(_ rule: String, _ address: String, _ port: UInt16, file: StaticString = #filePath, line: UInt = #line)
        throws -> Bool
    {
        try AllowRule(parsing: rule).allows(ip(address), port: port)
    }

    // MARK: - Addresses

    func testIPv4Prefixes() throws {
        XCTAssertTrue(try allows("0.0.0.0/0", "203.0.113.9", 1))
        XCTAssertTrue(try allows("0.0.0.0/0", "255.255.255.255", 65535))
        XCTAssertTrue(try allows("10.0.0.0/8", "10.255.255.255", 80))
        XCTAssertFalse(try allows("10.0.0.0/8", "11.0.0.0", 80))
        XCTAssertFalse(try allows("10.0.0.0/8", "9.255.255.255", 80))
        XCTAssertTrue(try allows("192.168.77.0/24", "192.168.77.0", 80))
        XCTAssertTrue(try allows("192.168.77.0/24", "192.168.77.255", 80))
        XCTAssertFalse(try allows("192.168.77.0/24", "192.168.78.1", 80))
        XCTAssertTrue(try allows("192.168.77.10/32", "192.168.77.10", 80))
        XCTAssertFalse(try allows("192.168.77.10/32", "192.168.77.11", 80))
        XCTAssertTrue(try allows("192.168.77.10", "192.168.77.10", 80), "no prefix means /32")
        XCTAssertFalse(try allows("192.168.77.10", "192.168.77.11", 80))
    }

    func testPrefixesOffByteBoundaries() throws {
        XCTAssertTrue(try allows("192.168.77.128/25", "192.168.77.200", 80))
        XCTAssertFalse(try allows("192.168.77.128/25", "192.168.77.127", 80))
        XCTAssertTrue(try allows("172.16.0.0/12", "172.31.255.255", 80))
        XCTAssertFalse(try allows("172.16.0.0/12", "172.32.0.0", 80))
        XCTAssertTrue(try allows("fd00::/63", "fd00:0:0:1::1", 22))
        XCTAssertFalse(try allows("fd00::/63", "fd00:0:0:2::1", 22))
        XCTAssertTrue(try allows("fd00::/7", "fc12::1", 22))
        XCTAssertFalse(try allows("fd00::/7", "fe80::1", 22))
    }

    func testTheNetworkIsMaskedButTheTextKept() throws {
        let rule = try AllowRule(parsing: "192.168.77.99/24")
        XCTAssertEqual(rule.network, ip("192.168.77.0"))
        XCTAssertEqual(rule.prefixLength, 24)
        XCTAssertEqual(rule.text, "192.168.77.99/24")
        XCTAssertEqual(rule.description, "192.168.77.99/24")
        XCTAssertTrue(rule.allows(ip("192.168.77.1"), port: 1))
        XCTAssertEqual(try AllowRule(parsing: "fd00::abcd/64").network, ip("fd00::"))
        XCTAssertEqual(try AllowRule(parsing: "10.1.2.3/0").network, ip("0.0.0.0"))
    }

    func testIPv6Prefixes() throws {
        XCTAssertTrue(try allows("::/0", "2001:db8::1", 443))
        XCTAssertTrue(try allows("fd00::/8", "fdff::1", 443))
        XCTAssertFalse(try allows("fd00::/8", "fc00::1", 443))
        XCTAssertTrue(try allows("fd00::/64", "fd00::ffff:ffff:ffff:ffff", 443))
        XCTAssertFalse(try allows("fd00::/64", "fd00:0:0:1::", 443))
        XCTAssertTrue(try allows("fd00::10/128", "fd00::10", 443))
        XCTAssertFalse(try allows("fd00::10/128", "fd00::11", 443))
        XCTAssertTrue(try allows("fd00::10", "fd00::10", 443), "no prefix means /128")
        XCTAssertEqual(try AllowRule(parsing: "fd00::10").prefixLength, 128)
        XCTAssertTrue(try allows("[fd00::10]", "fd00::10", 443))
    }

    func testFamiliesNeverMix() throws {
        XCTAssertFalse(try allows("0.0.0.0/0", "::", 80))
        XCTAssertFalse(try allows("0.0.0.0/0", "::ffff:192.168.77.10", 80))
        XCTAssertFalse(try allows("0.0.0.0/0", "fd00::1", 80))
        XCTAssertFalse(try allows("::/0", "0.0.0.0", 80))
        XCTAssertFalse(try allows("::/0", "192.168.77.10", 80))
    }

    func testAnyMeansEveryAddressOfBothFamilies() throws {
        for text in ["any", "*"] {
            let rule = try AllowRule(parsing: text)
            XCTAssertEqual(rule.prefixLength, 0, text)
            XCTAssertTrue(rule.ports.isEmpty, text)
            XCTAssertTrue(rule.allows(ip("1.2.3.4"), port: 1), text)
            XCTAssertTrue(rule.allows(ip("192.168.77.10"), port: 65535), text)
            XCTAssertTrue(rule.allows(ip("fd00::10"), port: 80), text)
        }
        XCTAssertTrue(try allows("any:22", "8.8.8.8", 22))
        XCTAssertFalse(try allows("any:22", "8.8.8.8", 23))
    }

    // MARK: - Ports

    func testPortLists() throws {
        let rule = try AllowRule(parsing: "192.168.77.10:80,443")
        XCTAssertEqual(rule.ports, [80...80, 443...443])
        XCTAssertTrue(rule.allows(ip("192.168.77.10"), port: 80))
        XCTAssertTrue(rule.allows(ip("192.168.77.10"), port: 443))
        XCTAssertFalse(rule.allows(ip("192.168.77.10"), port: 8080))
        XCTAssertFalse(rule.allows(ip("192.168.77.10"), port: 81))
        XCTAssertFalse(rule.allows(ip("192.168.77.11"), port: 80), "the address must match too")
    }

    func testPortRanges() throws {
        let rule = try AllowRule(parsing: "10.0.0.0/8:8000-8100")
        XCTAssertEqual(rule.ports, [8000...8100])
        for port: UInt16 in [8000, 8050, 8100] { XCTAssertTrue(rule.allows(ip("10.1.2.3"), port: port), "\(port)") }
        for port: UInt16 in [7999, 8101, 80] { XCTAssertFalse(rule.allows(ip("10.1.2.3"), port: port), "\(port)") }
        let mixed = try AllowRule(parsing: "10.0.0.1:22,8000-8001,65535")
        XCTAssertEqual(mixed.ports, [22...22, 8000...8001, 65535...65535])
        XCTAssertTrue(mixed.allows(ip("10.0.0.1"), port: 65535))
        XCTAssertTrue(try allows("10.0.0.1:1-65535", "10.0.0.1", 1))
        XCTAssertTrue(try allows("10.0.0.1:80-80", "10.0.0.1", 80))
    }

    func testIPv6WithPortsInBrackets() throws {
        let rule = try AllowRule(parsing: "[fd00::/64]:22")
        XCTAssertEqual(rule.network, ip("fd00::"))
        XCTAssertEqual(rule.prefixLength, 64)
        XCTAssertEqual(rule.ports, [22...22])
        XCTAssertTrue(rule.allows(ip("fd00::1"), port: 22))
        XCTAssertFalse(rule.allows(ip("fd00::1"), port: 23))
        XCTAssertFalse(rule.allows(ip("fd00:0:0:1::1"), port: 22))
        XCTAssertTrue(try allows("[fd00::10]:80,443", "fd00::10", 443))
        XCTAssertTrue(try allows("[::/0]:53", "2001:db8::53", 53))
    }

    func testNoPortsMeansEveryPort() throws {
        XCTAssertTrue(try AllowRule(parsing: "fd00::/64").ports.isEmpty)
        XCTAssertTrue(try allows("fd00::/64", "fd00::1", 1))
        XCTAssertTrue(try allows("fd00::/64", "fd00::1", 65535))
        XCTAssertTrue(try allows("192.168.77.0/24", "192.168.77.3", 0))
    }

    // MARK: - Invalid rules

    private func assertInvalid(_ text: String, _ reason: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try AllowRule(parsing: text), text, file: file, line: line) { error in
            guard let e = error as? AllowRule.ParseError else {
                return XCTFail("\(text): \(error) is not a ParseError", file: file, line: line)
            }
            XCTAssertEqual(e.rule, text, file: file, line: line)
            XCTAssertTrue(e.reason.contains(reason), "\(text): '\(e.reason)' lacks '\(reason)'", file: file, line: line)
            XCTAssertTrue(e.description.hasPrefix("invalid --allow rule '\(text)': "), file: file, line: line)
        }
    }

    func testBadPrefixes() {
        assertInvalid("192.168.77.0/33", "prefix length must be 0-32")
        assertInvalid("fd00::/129", "prefix length must be 0-128")
        assertInvalid("[fd00::/129]:22", "prefix length must be 0-128")
        assertInvalid("10.0.0.0/-1", "prefix length")
        assertInvalid("10.0.0.0/", "prefix length")
        assertInvalid("10.0.0.0/eight", "prefix length")
        assertInvalid("10.0.0.0/8/8", "not an address or CIDR")
    }

    func testBadPorts() {
        assertInvalid("10.0.0.1:90-80", "'90-80' is not a port or port range")
        assertInvalid("10.0.0.1:0", "'0' is not a port")
        assertInvalid("10.0.0.1:0-10", "'0-10'")
        assertInvalid("10.0.0.1:65536", "'65536'")
        assertInvalid("10.0.0.1:80-", "'80-'")
        assertInvalid("10.0.0.1:-80", "'-80'")
        assertInvalid("10.0.0.1:1-2-3", "'1-2-3'")
        assertInvalid("10.0.0.1:http", "'http'")
        assertInvalid("10.0.0.1:", "empty port list")
        assertInvalid("10.0.0.1:,", "empty port list")
        assertInvalid("[fd00::1]:0", "'0'")
    }

    func testGarbage() {
        assertInvalid("", "not an address or CIDR")
        assertInvalid("garbage", "not an address or CIDR")
        assertInvalid("300.1.1.1", "not an address or CIDR")
        assertInvalid("lan.example:80", "not an address or CIDR")
        assertInvalid("[fd00::/64", "missing ']'")
        assertInvalid("[fd00::/64]22", "expected ':PORTS' after ']'")
        assertInvalid("[]:22", "not an address or CIDR")
    }
}
