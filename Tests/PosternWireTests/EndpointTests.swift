import PosternWire
import XCTest

final class EndpointTests: XCTestCase {
    func testParsesHostPort() {
        XCTAssertEqual(Endpoint(parsing: "192.168.77.10:80"), Endpoint(ipv4("192.168.77.10"), 80))
        XCTAssertEqual(Endpoint(parsing: "intranet.lan:443"), Endpoint(host: .name("intranet.lan"), port: 443))
        XCTAssertEqual(Endpoint(parsing: "localhost:0"), Endpoint(host: .name("localhost"), port: 0))
        XCTAssertEqual(Endpoint(parsing: "0.0.0.0:65535"), Endpoint(.anyV4, 65535))
        XCTAssertEqual(Endpoint(parsing: Substring("10.0.0.1:22")), Endpoint(ipv4("10.0.0.1"), 22))
    }

    func testParsesBracketedIPv6() {
        XCTAssertEqual(Endpoint(parsing: "[fd00::10]:80"), Endpoint(ipv6("fd00::10"), 80))
        XCTAssertEqual(Endpoint(parsing: "[::]:8080"), Endpoint(.anyV6, 8080))
        XCTAssertEqual(Endpoint(parsing: "[::ffff:10.0.0.1]:1"), Endpoint(ipv6("::ffff:10.0.0.1"), 1))
    }

    func testRejectsMissingOrBadPort() {
        for text in [
            "intranet.lan", "10.0.0.1", "10.0.0.1:", "host:port", "host:65536", "host:-1", "host:80:", "[fd00::1]", "[fd00::1]:",
            "[fd00::1]80", "[fd00::1]:x",
        ] {
            XCTAssertNil(Endpoint(parsing: text), "'\(text)'")
        }
    }

    func testRejectsBareIPv6AndBadBrackets() {
        for text in ["fd00::1:80", "::1:80", "::", "[fd00::1:80", "[10.0.0.1]:80", "[name]:80", "[]:80", ":80", ""] {
            XCTAssertNil(Endpoint(parsing: text), "'\(text)'")
        }
    }

    func testFormatsAndReparses() {
        for text in ["192.168.77.10:80", "[fd00::10]:80", "intranet.lan:443", "[::]:0"] {
            let e = Endpoint(parsing: text)
            XCTAssertEqual(e?.description, text)
            XCTAssertEqual(e.flatMap { Endpoint(parsing: $0.description) }, e)
        }
        XCTAssertEqual(Endpoint(ipv6("fd00:0::10"), 9).description, "[fd00::10]:9")
    }

    /// IPv4 endpoints are written digit by digit: each octet and the port at every width.
    func testIPv4EndpointsAreWrittenAsTheirNumbersSay() {
        let octets: [UInt32] = [0, 1, 9, 10, 99, 100, 199, 255]
        let ports: [UInt16] = [0, 7, 10, 80, 100, 999, 1000, 9999, 10000, 65535]
        for a in octets {
            for b in octets.reversed() {
                for port in ports {
                    let v = a << 24 | b << 16 | (a ^ b) << 8 | b
                    let expected = "\(a).\(b).\(a ^ b).\(b):\(port)"
                    XCTAssertEqual(Endpoint(.v4(v), port).description, expected)
                }
            }
        }
    }
}
