import PosternCore
import PosternWire
import XCTest

/// The mediator's whole policy: the server cannot widen it.
final class PolicyTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    func testEmptyPolicyAllowsEveryOrdinaryDestination() {
        let policy = Policy(allow: [], listenEnabled: true)
        XCTAssertTrue(policy.allowsConnect(to: ip("192.168.77.10"), port: 80))
        XCTAssertTrue(policy.allowsConnect(to: ip("8.8.8.8"), port: 53))
        XCTAssertTrue(policy.allowsConnect(to: ip("fd00::1"), port: 22))
        XCTAssertTrue(policy.allowsConnect(to: ip("::ffff:192.168.77.10"), port: 80))
        XCTAssertTrue(policy.allowsConnect(to: ip("1.0.0.0"), port: 80), "just past 0.0.0.0/8")
        XCTAssertTrue(policy.allowsConnect(to: ip("126.255.255.255"), port: 80), "just below 127.0.0.0/8")
        XCTAssertTrue(policy.allowsConnect(to: ip("128.0.0.0"), port: 80), "just past 127.0.0.0/8")
        XCTAssertTrue(policy.allowsConnect(to: ip("169.253.255.255"), port: 80))
        XCTAssertTrue(policy.allowsConnect(to: ip("169.255.0.0"), port: 80))
        XCTAssertTrue(policy.allowsConnect(to: ip("fec0::1"), port: 80), "just past fe80::/10")
        XCTAssertFalse(policy.allowsConnect(to: ip("::2"), port: 80), "::2 is 0.0.0.2: this host")
    }

    // MARK: - Protected ranges: the mediator's own host and link

    private let protected = [
        "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "169.254.169.254", "169.254.0.1", "::", "::1", "fe80::1",
        "febf:ffff::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::127.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    ]

    func testProtectedRangesAreRefusedWithoutARuleThatNamesThem() throws {
        let broad = [
            Policy(),
            Policy(allow: [try AllowRule(parsing: "0.0.0.0/0"), try AllowRule(parsing: "::/0")]),
            Policy(allow: [try AllowRule(parsing: "any")]),
            Policy(allow: [try AllowRule(parsing: "192.168.77.0/24"), try AllowRule(parsing: "::/0")]),
            Policy(allow: [try AllowRule(parsing: "127.0.0.0/7"), try AllowRule(parsing: "168.0.0.0/6")]),
            Policy(allow: [try AllowRule(parsing: "fe80::/9"), try AllowRule(parsing: "::/127")]),
            Policy(allow: [try AllowRule(parsing: "::ffff:0.0.0.0/96")]),
        ]
        for policy in broad {
            for address in protected {
                XCTAssertFalse(policy.allowsConnect(to: ip(address), port: 22), "\(address) under \(policy.allow)")
            }
        }
        XCTAssertEqual(ProtectedRange.containing(ip("::ffff:127.0.0.1")), .loopbackV4)
        XCTAssertEqual(ProtectedRange.containing(ip("169.254.169.254")), .linkLocalV4)
        XCTAssertEqual(ProtectedRange.containing(ip("fe80::1")), .linkLocalV6)
        XCTAssertNil(ProtectedRange.containing(ip("192.168.77.10")))
    }

    /// `ProtectedRange.containing` compares in place (it runs for every CONNECT); it must say exactly
    /// what the general network test says, at each range's edges and just outside them.
    func testContainingAgreesWithTheNetworkTestAtEveryEdge() {
        let addresses = [
            "0.0.0.0", "0.255.255.255", "1.0.0.0", "126.255.255.255", "127.0.0.0", "127.255.255.255", "128.0.0.0",
            "169.253.255.255", "169.254.0.0", "169.254.169.254", "169.254.255.255", "169.255.0.0", "192.168.77.10",
            "255.255.255.255", "::", "::1", "::2", "::ffff:127.0.0.1", "::ffff:192.168.77.10", "::127.0.0.1",
            "fe7f:ffff::1", "fe80::", "fe80::1", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::", "fd00:77::10",
            "2001:db8::1", "ff02::1", "1::", "0:0:0:0:0:1::",
        ]
        for text in addresses {
            let address = ip(text)
            let normalized = address.normalized
            let expected = ProtectedRange.allCases.first {
                $0.contains(network: normalized, prefixLength: normalized.isIPv6 ? 128 : 32)
            }
            XCTAssertEqual(ProtectedRange.containing(address), expected, text)
        }
    }

    func testTheIssueAttackIsDenied() throws {
        // `--allow 192.168.77.0/24 --allow ::/0`: the mapped loopback is IPv4 loopback, not IPv6.
        let policy = Policy(allow: [try AllowRule(parsing: "192.168.77.0/24"), try AllowRule(parsing: "::/0")])
        XCTAssertFalse(policy.allowsConnect(to: ip("::ffff:127.0.0.1"), port: 22))
        XCTAssertFalse(policy.allowsConnect(to: ip("::ffff:203.0.113.10"), port: 22), "mapped addresses meet the IPv4 rules")
        XCTAssertTrue(policy.allowsConnect(to: ip("::ffff:192.168.77.10"), port: 22), "and pass them")
        XCTAssertTrue(policy.allowsConnect(to: ip("2001:db8::1"), port: 22))
    }

    func testARuleInsideAProtectedRangeOpensIt() throws {
        let ssh = Policy(allow: [try AllowRule(parsing: "127.0.0.1:22")])
        XCTAssertTrue(ssh.allowsConnect(to: ip("127.0.0.1"), port: 22))
        XCTAssertTrue(ssh.allowsConnect(to: ip("::ffff:127.0.0.1"), port: 22), "the mapped form is the same address")
        XCTAssertFalse(ssh.allowsConnect(to: ip("127.0.0.1"), port: 23), "the rule's ports still apply")
        XCTAssertFalse(ssh.allowsConnect(to: ip("127.0.0.2"), port: 22))
        XCTAssertFalse(ssh.allowsConnect(to: ip("::1"), port: 22), "IPv6 loopback is its own range")
        XCTAssertFalse(ssh.allowsConnect(to: ip("192.168.77.10"), port: 22), "a rule restricts as always")

        let metadata = Policy(allow: [try AllowRule(parsing: "169.254.0.0/16"), try AllowRule(parsing: "any")])
        XCTAssertTrue(metadata.allowsConnect(to: ip("169.254.169.254"), port: 80))
        XCTAssertTrue(metadata.allowsConnect(to: ip("8.8.8.8"), port: 53))
        XCTAssertFalse(metadata.allowsConnect(to: ip("127.0.0.1"), port: 80), "naming one range opens no other")

        XCTAssertTrue(Policy(allow: [try AllowRule(parsing: "::1")]).allowsConnect(to: ip("::1"), port: 1))
        XCTAssertTrue(Policy(allow: [try AllowRule(parsing: "[fe80::/64]:22")]).allowsConnect(to: ip("fe80::1"), port: 22))
        XCTAssertTrue(Policy(allow: [try AllowRule(parsing: "::ffff:127.0.0.1")]).allowsConnect(to: ip("127.0.0.1"), port: 1))
        XCTAssertTrue(Policy(allow: [try AllowRule(parsing: "0.0.0.0/8")]).allowsConnect(to: ip("0.0.0.0"), port: 1))
    }

    // MARK: - Bind addresses (OPEN, REDIRECT)

    func testBindAddresses() throws {
        for policy in [Policy(), Policy(allow: [try AllowRule(parsing: "any")]), Policy(allow: [try AllowRule(parsing: "10.0.0.0/8:80")])] {
            for address in ["0.0.0.0", "::", "::ffff:0.0.0.0", "192.168.77.2", "fd00::2", "203.0.113.5"] {
                XCTAssertTrue(policy.allowsBind(to: ip(address)), "\(address) under \(policy.allow)")
            }
            for address in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.1.1", "fe80::1", "0.0.0.1"] {
                XCTAssertFalse(policy.allowsBind(to: ip(address)), "\(address) under \(policy.allow)")
            }
        }
        let loopback = Policy(allow: [try AllowRule(parsing: "127.0.0.1:22")])
        XCTAssertTrue(loopback.allowsBind(to: ip("127.0.0.1")), "a rule naming the address allows binding it, whatever its ports")
        XCTAssertTrue(loopback.allowsBind(to: ip("::ffff:127.0.0.1")))
        XCTAssertFalse(loopback.allowsBind(to: ip("127.0.0.2")))
        XCTAssertFalse(loopback.allowsBind(to: ip("::1")))
    }

    func testRulesAreAUnion() throws {
        let policy = Policy(
            allow: [try AllowRule(parsing: "192.168.77.0/24:80,443"), try AllowRule(parsing: "[fd00::/64]:22")],
            listenEnabled: true)
        XCTAssertTrue(policy.allowsConnect(to: ip("192.168.77.10"), port: 80))
        XCTAssertTrue(policy.allowsConnect(to: ip("192.168.77.10"), port: 443))
        XCTAssertTrue(policy.allowsConnect(to: ip("fd00::10"), port: 22))
        XCTAssertFalse(policy.allowsConnect(to: ip("192.168.77.10"), port: 22))
        XCTAssertFalse(policy.allowsConnect(to: ip("fd00::10"), port: 80))
        XCTAssertFalse(policy.allowsConnect(to: ip("192.168.78.10"), port: 80))
        XCTAssertFalse(policy.allowsConnect(to: ip("8.8.8.8"), port: 53))
    }

    func testAnIPv4OnlyPolicyDeniesIPv6() throws {
        let policy = Policy(allow: [try AllowRule(parsing: "0.0.0.0/0")], listenEnabled: false)
        XCTAssertTrue(policy.allowsConnect(to: ip("8.8.8.8"), port: 53))
        XCTAssertFalse(policy.allowsConnect(to: ip("2001:db8::1"), port: 53))
    }

    func testAnyCoversBothFamilies() throws {
        let policy = Policy(allow: [try AllowRule(parsing: "any:53")], listenEnabled: false)
        XCTAssertTrue(policy.allowsConnect(to: ip("8.8.8.8"), port: 53))
        XCTAssertTrue(policy.allowsConnect(to: ip("2001:db8::1"), port: 53))
        XCTAssertFalse(policy.allowsConnect(to: ip("2001:db8::1"), port: 54))
    }

    func testListenEnabledIsCarriedAsGiven() throws {
        XCTAssertFalse(Policy(allow: [], listenEnabled: false).listenEnabled)
        XCTAssertTrue(Policy(allow: [], listenEnabled: true).listenEnabled)
        let restricted = Policy(allow: [try AllowRule(parsing: "10.0.0.0/8")], listenEnabled: false)
        XCTAssertFalse(restricted.listenEnabled)
        XCTAssertTrue(restricted.allowsConnect(to: ip("10.0.0.1"), port: 1), "listen and connect are separate")
    }

    func testListenAndRedirectAreOffUnlessEnabled() {
        let policy = Policy()
        XCTAssertFalse(policy.listenEnabled)
        XCTAssertFalse(policy.redirectEnabled)
        XCTAssertTrue(Policy(redirectEnabled: true).redirectEnabled)
        XCTAssertFalse(Policy(redirectEnabled: true).listenEnabled, "redirect does not imply listen")
    }
}
