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
        XCTAssertFalse(try allows("0.0.0.0/0", "fd00::1", 80))
        XCTAssertFalse(try allows("::/0", "0.0.0.0", 80))
        XCTAssertFalse(try allows("::/0", "192.168.77.10", 80))
    }

    func testMappedAndCompatibleAddressesMeetTheIPv4Rules() throws {
        XCTAssertTrue(try allows("0.0.0.0/0", "::ffff:192.168.77.10", 80))
        XCTAssertTrue(try allows("192.168.77.0/24", "::ffff:192.168.77.10", 80))
        XCTAssertTrue(try allows("192.168.77.0/24", "::192.168.77.10", 80))
        XCTAssertFalse(try allows("192.168.77.0/24", "::ffff:192.168.78.10", 80))
        XCTAssertFalse(try allows("::/0", "::ffff:127.0.0.1", 80), "a mapped address is not IPv6 for the rules")
        XCTAssertFalse(try allows("::/0", "::ffff:192.168.77.10", 80))
        XCTAssertFalse(try allows("::/0", "::10.0.0.1", 80))
        XCTAssertTrue(try allows("::/0", "::1", 80), "::1 is IPv6 loopback, not 0.0.0.1")
        XCTAssertTrue(try allows("::/0", "2001:db8::ffff:127.0.0.1", 80))
    }

    func testRulesWrittenInTheMappedFormAreIPv4Rules() throws {
        let one = try AllowRule(parsing: "::ffff:127.0.0.1")
        XCTAssertEqual(one.network, ip("127.0.0.1"))
        XCTAssertEqual(one.prefixLength, 32)
        XCTAssertEqual(one.text, "::ffff:127.0.0.1", "the text stays as written")
        let net = try AllowRule(parsing: "[::ffff:10.0.0.0/104]:80")
        XCTAssertEqual(net.network, ip("10.0.0.0"))
        XCTAssertEqual(net.prefixLength, 8)
        XCTAssertTrue(net.allows(ip("10.1.2.3"), port: 80))
        XCTAssertTrue(net.allows(ip("::ffff:10.1.2.3"), port: 80))
        XCTAssertFalse(net.allows(ip("10.1.2.3"), port: 81))
        let all = try AllowRule(parsing: "::ffff:0:0/96")
        XCTAssertEqual(all.network, .anyV4)
        XCTAssertEqual(all.prefixLength, 0)
        XCTAssertEqual(try AllowRule(parsing: "::10.0.0.0/104").network, ip("10.0.0.0"), "IPv4-compatible")
        // Short of /96 the rule is IPv6 and, after normalisation, never meets a mapped address.
        XCTAssertEqual(try AllowRule(parsing: "::/95").network, .anyV6)
        XCTAssertEqual(try AllowRule(parsing: "::1").network, ip("::1"))
    }

    func testWhichRulesNameAProtectedRange() throws {
        func names(_ rule: String, _ range: ProtectedRange) throws -> Bool { try AllowRule(parsing: rule).names(range) }
        XCTAssertTrue(try names("127.0.0.1:22", .loopbackV4))
        XCTAssertTrue(try names("127.0.0.0/8", .loopbackV4))
        XCTAssertTrue(try names("::ffff:127.0.0.1", .loopbackV4))
        XCTAssertTrue(try names("169.254.169.254", .linkLocalV4))
        XCTAssertTrue(try names("169.254.0.0/16", .linkLocalV4))
        XCTAssertTrue(try names("::1", .loopbackV6))
        XCTAssertTrue(try names("[fe80::/64]:22", .linkLocalV6))
        XCTAssertTrue(try names("0.0.0.0/8", .thisHostV4))
        XCTAssertTrue(try names("::", .unspecifiedV6))
        XCTAssertFalse(try names("127.0.0.0/7", .loopbackV4), "wider than the range")
        XCTAssertFalse(try names("0.0.0.0/0", .loopbackV4))
        XCTAssertFalse(try names("0.0.0.0/0", .thisHostV4))
        XCTAssertFalse(try names("::/0", .loopbackV6))
        XCTAssertFalse(try names("::/0", .linkLocalV6))
        XCTAssertFalse(try names("any", .loopbackV4))
        XCTAssertFalse(try names("*:22", .loopbackV6))
        XCTAssertFalse(try names("169.254.0.0/15", .linkLocalV4))
        XCTAssertFalse(try names("127.0.0.1", .loopbackV6), "the other family")
        XCTAssertFalse(try names("192.168.77.0/24", .loopbackV4))
        XCTAssertFalse(try names("fe80::/9", .linkLocalV6))
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
