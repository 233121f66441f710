import PosternCore
import PosternWire
import XCTest

/// The mediator's whole policy: the server cannot widen it.
final class PolicyTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    func testEmptyPolicyAllowsEveryDestination() {
        let policy = Policy(allow: [], listenEnabled: true)
        XCTAssertTrue(policy.allowsConnect(to: ip("192.168.77.10"), port: 80))
        XCTAssertTrue(policy.allowsConnect(to: ip("8.8.8.8"), port: 53))
        XCTAssertTrue(policy.allowsConnect(to: ip("fd00::1"), port: 22))
        XCTAssertTrue(policy.allowsConnect(to: ip("::"), port: 0))
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
