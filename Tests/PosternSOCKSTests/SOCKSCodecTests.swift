import NIOCore
import PosternSOCKS
import PosternWire
import XCTest

/// Reply codes, the UDP header, the users file and the listener spec.
final class SOCKSCodecTests: XCTestCase {
    func testReplyCodesForMediatorFailures() {
        XCTAssertEqual(SOCKSReply(failure: .refused, errno: 111).rawValue, 5)
        XCTAssertEqual(SOCKSReply(failure: .unreachable, errno: 101).rawValue, 3)
        XCTAssertEqual(SOCKSReply(failure: .unreachable, errno: 113).rawValue, 4)
        XCTAssertEqual(SOCKSReply(failure: .resolveFailed, errno: 0).rawValue, 4)
        XCTAssertEqual(SOCKSReply(failure: .timedOut, errno: 110).rawValue, 6)
        XCTAssertEqual(SOCKSReply(failure: .deniedByPolicy, errno: 13).rawValue, 2)
        XCTAssertEqual(SOCKSReply(failure: .permissionDenied, errno: 13).rawValue, 2)
        XCTAssertEqual(SOCKSReply(failure: .notSupported, errno: 0).rawValue, 7)
        XCTAssertEqual(SOCKSReply(failure: .shuttingDown, errno: 0).rawValue, 1)
        XCTAssertEqual(SOCKSReply(failure: .internalError, errno: 12).rawValue, 1)
        XCTAssertEqual(SOCKSReply(failure: .unknown(999), errno: 0).rawValue, 1)
    }

    func testUDPHeaderParse() {
        let ipv4 = ByteBuffer(bytes: [0, 0, 0, 1, 192, 168, 77, 10, 0, 53, 0xaa, 0xbb])
        XCTAssertEqual(
            SOCKSUDPHeader.parse(ipv4),
            .datagram(destination: Endpoint(IPAddress("192.168.77.10")!, 53), payload: ByteBuffer(bytes: [0xaa, 0xbb])))
        let v6 = IPAddress("fd00::10")!
        XCTAssertEqual(
            SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0, 0, 4] + v6.bytes + [0x14, 0xe9])),
            .datagram(destination: Endpoint(v6, 5353), payload: ByteBuffer()), "an empty payload is a datagram too")
        XCTAssertEqual(
            SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0, 0, 3, 3] + Array("a.b".utf8) + [0, 7, 1])),
            .datagram(destination: Endpoint(host: .name("a.b"), port: 7), payload: ByteBuffer(bytes: [1])))
    }

    func testUDPHeaderRefusals() {
        XCTAssertEqual(SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0, 1, 1, 10, 0, 0, 1, 0, 53, 9])), .fragment, "FRAG 1")
        XCTAssertEqual(SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0, 0x81, 1, 10, 0, 0, 1, 0, 53])), .fragment, "last fragment")
        XCTAssertEqual(SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 1, 0, 1, 10, 0, 0, 1, 0, 53])), .malformed, "RSV not 0")
        XCTAssertEqual(SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0, 0, 2, 10, 0, 0, 1, 0, 53])), .malformed, "ATYP 2")
        XCTAssertEqual(SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0, 0, 1, 10, 0, 0])), .malformed, "cut short")
        XCTAssertEqual(SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0])), .malformed)
        XCTAssertEqual(SOCKSUDPHeader.parse(ByteBuffer(bytes: [0, 0, 0, 3, 0, 0, 53])), .malformed, "empty name")
    }

    func testUDPHeaderWrite() {
        var b = ByteBuffer()
        let source = Endpoint(IPAddress("192.168.77.10")!, 53)
        let n = SOCKSUDPHeader.write(from: source, into: &b)
        XCTAssertEqual(Array(b.readableBytesView), [0, 0, 0, 1, 192, 168, 77, 10, 0, 53])
        XCTAssertEqual(n, SOCKSUDPHeader.length(for: source))
        var b6 = ByteBuffer()
        let v6 = Endpoint(IPAddress("fd00::10")!, 53)
        XCTAssertEqual(SOCKSUDPHeader.write(from: v6, into: &b6), 22)
        XCTAssertEqual(SOCKSUDPHeader.length(for: v6), 22)
        XCTAssertEqual(Array(b6.readableBytesView.prefix(4)), [0, 0, 0, 4])
    }

    func testUsersFile() throws {
        let users = try SOCKSUsers(
            parsing: """
                # accounts
                alice  s3cret
                bob\tpw2  lab2,lab3

                carol pw3 *
                """, source: "users")
        XCTAssertEqual(users.mediator(username: Array("alice".utf8), password: Array("s3cret".utf8), listenerMediator: "acme"), "acme")
        XCTAssertNil(users.mediator(username: Array("alice".utf8), password: Array("s3cre".utf8), listenerMediator: "acme"))
        XCTAssertNil(users.mediator(username: Array("alice".utf8), password: Array("s3cret!".utf8), listenerMediator: "acme"))
        XCTAssertNil(users.mediator(username: Array("alice@lab2".utf8), password: Array("s3cret".utf8), listenerMediator: "acme"))
        XCTAssertNil(users.mediator(username: Array("mallory".utf8), password: Array("s3cret".utf8), listenerMediator: "acme"))
        XCTAssertEqual(users.mediator(username: Array("bob@lab3".utf8), password: Array("pw2".utf8), listenerMediator: "acme"), "lab3")
        XCTAssertEqual(users.mediator(username: Array("bob".utf8), password: Array("pw2".utf8), listenerMediator: "acme"), "acme")
        XCTAssertNil(users.mediator(username: Array("bob@lab9".utf8), password: Array("pw2".utf8), listenerMediator: "acme"))
        XCTAssertEqual(users.mediator(username: Array("carol@any".utf8), password: Array("pw3".utf8), listenerMediator: "acme"), "any")
        XCTAssertNil(users.mediator(username: [0xff, 0xfe], password: Array("pw3".utf8), listenerMediator: "acme"))
    }

    /// Whether a listener's clients may choose another mediator than its own: then the server cannot
    /// accept them onto their mediator's loop before their handshake (`--threads`).
    func testWhetherAccountsMayChooseAnotherMediator() throws {
        let plain = try SOCKSUsers(parsing: "alice s3cret\nbob pw2 lab2", source: "users")
        XCTAssertFalse(plain.mayChoose(otherThan: "lab2"), "bob's only choice is the listener's own mediator")
        XCTAssertTrue(plain.mayChoose(otherThan: "acme"), "bob may choose lab2 on acme's listener")
        XCTAssertFalse(try SOCKSUsers(parsing: "alice s3cret", source: "users").mayChoose(otherThan: "acme"))
        XCTAssertTrue(try SOCKSUsers(parsing: "alice s3cret\ncarol pw3 *", source: "users").mayChoose(otherThan: "acme"))
    }

    func testUsersFileRefusals() {
        for bad in ["", "# only a comment", "alice", "alice pw x y", "al@ice pw", "alice pw\nalice pw2", "alice pw a,,b"] {
            XCTAssertThrowsError(try SOCKSUsers(parsing: bad, source: "users"), bad)
        }
    }

    func testListenerSpec() throws {
        let spec = try SOCKSListenerSpec(parsing: "127.0.0.1:1080=acme")
        XCTAssertEqual(spec.listen.port, 1080)
        XCTAssertEqual(spec.mediator, "acme")
        XCTAssertTrue(spec.listen.address.isLoopback)
        let v6 = try SOCKSListenerSpec(parsing: "[::]:1080=lab-2")
        XCTAssertTrue(v6.listen.address.isIPv6)
        for bad in ["127.0.0.1:1080", "1080=acme", "127.0.0.1:1080=", "127.0.0.1:99999=acme", "::1:1080=acme"] {
            XCTAssertThrowsError(try SOCKSListenerSpec(parsing: bad), bad)
        }
    }
}
