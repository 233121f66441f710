import PosternCore
import PosternWire
import XCTest

/// A forward's `,KEY=VALUE` options after its target: PROXY header, allowed sources, bandwidth limit.
final class ForwardOptionsTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    private func assertInvalid(_ text: String, _ reason: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ForwardSpec(parsing: text), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(reason), "\(error)", file: file, line: line)
        }
    }

    func testAPlainForwardHasNoOptions() throws {
        let spec = try ForwardSpec(parsing: "tcp:0.0.0.0:8080=acme/192.168.77.10:80")
        XCTAssertTrue(spec.options.isEmpty)
        XCTAssertTrue(spec.options.allows(ip("198.51.100.99")), "no allow list: everyone")
    }

    func testAllThreeOptions() throws {
        let text = "tcp:0.0.0.0:8080=acme/192.168.77.10:80,proxy=v2,allow=203.0.113.0/24,allow=2001:db8::/32,rate=10M"
        let spec = try ForwardSpec(parsing: text)
        XCTAssertEqual(spec.target, Endpoint(ip("192.168.77.10"), 80), "the options do not leak into the target")
        XCTAssertEqual(spec.text, text)
        XCTAssertEqual(spec.options.proxy, .v2)
        XCTAssertEqual(spec.options.rate, 10_000_000)
        XCTAssertEqual(spec.options.allow.map(\.description), ["203.0.113.0/24", "2001:db8::/32"])
    }

    func testOptionsOnIPv6AndNamedTargets() throws {
        let a = try ForwardSpec(parsing: "tcp:[::]:8080=acme/[fd00::10]:80,proxy=v1")
        XCTAssertEqual(a.target, Endpoint(ip("fd00::10"), 80))
        XCTAssertEqual(a.options.proxy, .v1)
        let b = try ForwardSpec(parsing: "udp:5353=acme/192.168.77.10:53,rate=500K,allow=10.0.0.0/8")
        XCTAssertEqual(b.options.rate, 500_000)
        XCTAssertTrue(b.options.allows(ip("10.1.2.3")))
    }

    func testAllowChecksTheSourceNetwork() throws {
        let spec = try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80,allow=203.0.113.7,allow=198.51.100.0/25,allow=2001:db8::/32")
        XCTAssertTrue(spec.options.allows(ip("203.0.113.7")))
        XCTAssertFalse(spec.options.allows(ip("203.0.113.8")), "a bare address is a /32")
        XCTAssertTrue(spec.options.allows(ip("198.51.100.127")))
        XCTAssertFalse(spec.options.allows(ip("198.51.100.128")))
        XCTAssertTrue(spec.options.allows(ip("2001:db8:ffff::1")))
        XCTAssertFalse(spec.options.allows(ip("2001:db9::1")))
        XCTAssertTrue(spec.options.allows(ip("::ffff:203.0.113.7")), "a dual-stack socket's mapped IPv4 user is that IPv4 user")
        XCTAssertFalse(spec.options.allows(ip("::ffff:203.0.113.8")))
    }

    func testAMappedPrefixIsTheIPv4PrefixItMeans() throws {
        let spec = try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80,allow=::ffff:203.0.113.0/120")
        XCTAssertEqual(spec.options.allow.map(\.description), ["203.0.113.0/24"])
        XCTAssertTrue(spec.options.allows(ip("203.0.113.200")))
    }

    func testOptionsAreEqualHoweverSpelledOrOrdered() throws {
        let a = try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80,proxy=v1,allow=10.0.0.0/8,allow=192.168.1.0/24,rate=1000K")
        let b = try ForwardSpec(
            parsing: "tcp:8080=acme/10.0.0.1:80,RATE=1M,allow=192.168.1.77/24,Proxy=V1,allow=10.9.9.9/8,allow=10.0.0.0/8")
        XCTAssertEqual(a.options, b.options)
    }

    func testRateSuffixes() throws {
        for (text, rate) in [("1", 1), ("250000", 250_000), ("64k", 64_000), ("3M", 3_000_000), ("2G", 2_000_000_000)] as [(String, UInt64)]
        {
            XCTAssertEqual(try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:80,rate=\(text)").options.rate, rate, text)
        }
    }

    func testBadOptionsAreRefused() {
        let base = "tcp:8080=acme/10.0.0.1:80"
        assertInvalid("\(base),proxy=v3", "proxy= must be v1 or v2")
        assertInvalid("\(base),proxy=v1,proxy=v2", "proxy= given twice")
        assertInvalid("\(base),allow=203.0.113.0/33", "allow= must be an address or CIDR")
        assertInvalid("\(base),allow=2001:db8::/129", "allow= must be an address or CIDR")
        assertInvalid("\(base),allow=", "allow= must be an address or CIDR")
        assertInvalid("\(base),rate=0", "rate= must be a positive number")
        assertInvalid("\(base),rate=-5", "rate= must be a positive number")
        assertInvalid("\(base),rate=1.5M", "rate= must be a positive number")
        assertInvalid("\(base),rate=M", "rate= must be a positive number")
        assertInvalid("\(base),rate=99999999999999999999", "rate= must be a positive number")
        assertInvalid("\(base),rate=2000000G", "rate= must be a positive number")
        assertInvalid("\(base),rate=1M,rate=2M", "rate= given twice")
        assertInvalid("\(base),speed=1M", "unknown option 'speed'")
        assertInvalid("\(base),proxy", "not KEY=VALUE")
        assertInvalid("\(base),", "not KEY=VALUE")
        assertInvalid("\(base),,rate=1M", "not KEY=VALUE")
    }

    func testOptionsBelongToForwardsTheServerListensOn() {
        assertInvalid("tcp:acme/0.0.0.0:9000=127.0.0.1:22,rate=1M", "apply to forwards the server listens on")
        assertInvalid("udp:acme/0.0.0.0:5000=127.0.0.1:5000,allow=10.0.0.0/8", "apply to forwards the server listens on")
        assertInvalid("udp:0.0.0.0:5353=acme/192.168.77.10:53,proxy=v2", "proxy= applies to tcp forwards")
    }

    func testACommaOnTheListenSideIsNoOption() {
        XCTAssertThrowsError(try ForwardSpec(parsing: "tcp:0.0.0.0:8080,rate=1M=acme/10.0.0.1:80"))
    }
}
