import PosternCore
import PosternWire
import XCTest

/// Forward specs as written on the command line (DESIGN.md, "Front ends on the server").
final class ForwardSpecTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    private func assertSpec(
        _ text: String, _ transport: Frame.Transport, _ direction: ForwardSpec.Direction, mediator: String,
        listen: Endpoint, target: Endpoint, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let spec = try ForwardSpec(parsing: text)
        XCTAssertEqual(spec.transport, transport, text, file: file, line: line)
        XCTAssertEqual(spec.direction, direction, text, file: file, line: line)
        XCTAssertEqual(spec.mediator, mediator, text, file: file, line: line)
        XCTAssertEqual(spec.listen, listen, text, file: file, line: line)
        XCTAssertEqual(spec.target, target, text, file: file, line: line)
        XCTAssertEqual(spec.text, text, file: file, line: line)
        XCTAssertEqual(spec.description, text, file: file, line: line)
    }

    func testServerListensMediatorConnectsTCP() throws {
        try assertSpec(
            "tcp:0.0.0.0:8080=acme/192.168.77.10:80", .tcp, .toMediator, mediator: "acme",
            listen: Endpoint(.anyV4, 8080), target: Endpoint(ip("192.168.77.10"), 80))
    }

    func testServerListensMediatorSendsUDP() throws {
        try assertSpec(
            "udp:0.0.0.0:5353=acme/192.168.77.10:53", .udp, .toMediator, mediator: "acme",
            listen: Endpoint(.anyV4, 5353), target: Endpoint(ip("192.168.77.10"), 53))
    }

    func testMediatorListensServerConnectsTCP() throws {
        try assertSpec(
            "tcp:acme/0.0.0.0:9000=127.0.0.1:22", .tcp, .fromMediator, mediator: "acme",
            listen: Endpoint(.anyV4, 9000), target: Endpoint(ip("127.0.0.1"), 22))
    }

    func testMediatorRedirectsUDP() throws {
        try assertSpec(
            "udp:acme/0.0.0.0:5000=127.0.0.1:5000", .udp, .fromMediator, mediator: "acme",
            listen: Endpoint(.anyV4, 5000), target: Endpoint(ip("127.0.0.1"), 5000))
    }

    func testIPv6InBrackets() throws {
        try assertSpec(
            "tcp:[::]:8080=acme/[fd00::10]:80", .tcp, .toMediator, mediator: "acme",
            listen: Endpoint(.anyV6, 8080), target: Endpoint(ip("fd00::10"), 80))
        try assertSpec(
            "udp:lab-1/[fd00::1]:53=[2001:db8::7]:5353", .udp, .fromMediator, mediator: "lab-1",
            listen: Endpoint(ip("fd00::1"), 53), target: Endpoint(ip("2001:db8::7"), 5353))
    }

    func testBarePortListensOnAllIPv4AndTargetMayBeAName() throws {
        try assertSpec(
            "tcp:8080=acme/host.lan:80", .tcp, .toMediator, mediator: "acme", listen: Endpoint(.anyV4, 8080),
            target: Endpoint(host: .name("host.lan"), port: 80))
        try assertSpec(
            "tcp:acme/2222=127.0.0.1:22", .tcp, .fromMediator, mediator: "acme", listen: Endpoint(.anyV4, 2222),
            target: Endpoint(ip("127.0.0.1"), 22))
    }

    func testTransportPrefixIgnoresCase() throws {
        XCTAssertEqual(try ForwardSpec(parsing: "TCP:8080=acme/10.0.0.1:80").transport, .tcp)
        XCTAssertEqual(try ForwardSpec(parsing: "Udp:53=acme/10.0.0.1:53").transport, .udp)
    }

    func testListenPortZeroIsAllowedButTargetPortZeroIsNot() throws {
        XCTAssertEqual(try ForwardSpec(parsing: "tcp:0.0.0.0:0=acme/10.0.0.1:80").listen.port, 0)
        XCTAssertThrowsError(try ForwardSpec(parsing: "tcp:8080=acme/10.0.0.1:0"))
    }

    // MARK: - Invalid specs

    /// Each invalid spec fails with a ParseError naming the spec and a reason containing `reason`.
    private func assertInvalid(
        _ text: String, _ reason: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try ForwardSpec(parsing: text), text, file: file, line: line) { error in
            guard let e = error as? ForwardSpec.ParseError else {
                return XCTFail("\(text): \(error) is not a ParseError", file: file, line: line)
            }
            XCTAssertEqual(e.spec, text, file: file, line: line)
            XCTAssertTrue(e.reason.contains(reason), "\(text): reason '\(e.reason)' lacks '\(reason)'", file: file, line: line)
            XCTAssertEqual(e.description, "invalid forward '\(text)': \(e.reason)", file: file, line: line)
        }
    }

    func testMissingTransportPrefix() {
        assertInvalid("0.0.0.0:8080=acme/192.168.77.10:80", "must start with tcp: or udp:")
        assertInvalid("sctp:0.0.0.0:8080=acme/192.168.77.10:80", "must start with tcp: or udp:")
        assertInvalid("", "must start with tcp: or udp:")
    }

    func testMissingEquals() {
        assertInvalid("tcp:0.0.0.0:8080", "missing '='")
        assertInvalid("tcp:acme/0.0.0.0:8080", "missing '='")
    }

    func testNoMediatorName() {
        assertInvalid("tcp:0.0.0.0:8080=192.168.77.10:80", "one side must name a mediator")
    }

    func testTwoMediatorNames() {
        assertInvalid("tcp:acme/0.0.0.0:8080=beta/192.168.77.10:80", "only one side may name a mediator")
    }

    func testBadPorts() {
        assertInvalid("tcp:0.0.0.0:65536=acme/192.168.77.10:80", "listen side '0.0.0.0:65536'")
        assertInvalid("tcp:0.0.0.0:http=acme/192.168.77.10:80", "listen side")
        assertInvalid("tcp:0.0.0.0=acme/192.168.77.10:80", "listen side")
        assertInvalid("tcp:8080=acme/192.168.77.10:99999", "target '192.168.77.10:99999'")
        assertInvalid("tcp:8080=acme/192.168.77.10:-1", "target")
        assertInvalid("tcp:8080=acme/192.168.77.10", "target")
        assertInvalid("tcp:8080=acme/192.168.77.10:", "target")
    }

    func testTargetPortZero() {
        assertInvalid("tcp:8080=acme/192.168.77.10:0", "target '192.168.77.10:0' is not HOST:PORT")
        assertInvalid("udp:acme/5000=127.0.0.1:0", "target")
    }

    func testBareIPv6NeedsBrackets() {
        assertInvalid("tcp:8080=acme/fd00::10:80", "IPv6 in brackets")
        assertInvalid("tcp:::1:8080=acme/192.168.77.10:80", "IPv6 in brackets")
        assertInvalid("tcp:[fd00::10:8080=acme/192.168.77.10:80", "listen side")
        assertInvalid("tcp:8080=acme/[192.168.77.10]:80", "target")
    }

    func testInvalidMediatorName() {
        assertInvalid("tcp:8080=ac!me/192.168.77.10:80", "invalid mediator name 'ac!me'")
        assertInvalid("tcp:8080=/192.168.77.10:80", "invalid mediator name ''")
        assertInvalid("tcp:8080=a b/192.168.77.10:80", "invalid mediator name 'a b'")
        assertInvalid("tcp:\(String(repeating: "m", count: 65))/0.0.0.0:9000=127.0.0.1:22", "invalid mediator name")
    }

    func testListenAddressMustNotBeAName() {
        assertInvalid("tcp:localhost:8080=acme/192.168.77.10:80", "listen side must be an IP address, not a name")
        assertInvalid("tcp:acme/lan-host:9000=127.0.0.1:22", "listen side must be an IP address, not a name")
    }
}
