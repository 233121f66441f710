import NIOCore
import PosternSOCKS
import PosternWire
import XCTest

/// The handshake against RFC 1928 / RFC 1929 byte layouts, message by message.
final class SOCKSHandshakeTests: XCTestCase {
    private func machine(_ method: SOCKSServerHandshake.Method = .noAuthentication) -> SOCKSServerHandshake {
        SOCKSServerHandshake(method: method, mediator: "acme") { user, password in
            // alice/secret may use acme; alice@lab2 picks lab2.
            switch (String(decoding: user, as: UTF8.self), String(decoding: password, as: UTF8.self)) {
            case ("alice", "secret"): return "acme"
            case ("alice@lab2", "secret"): return "lab2"
            default: return nil
            }
        }
    }

    private func feed(_ m: inout SOCKSServerHandshake, _ bytes: [UInt8]) -> (reply: [UInt8], next: SOCKSServerHandshake.Next) {
        let step = m.received(ByteBuffer(bytes: bytes))
        return (step.reply.map { Array($0.readableBytesView) } ?? [], step.next)
    }

    private func isClose(_ next: SOCKSServerHandshake.Next) -> Bool {
        if case .close = next { return true }
        return false
    }

    func testNoAuthConnectToIPv4() {
        var m = machine()
        var r = feed(&m, [5, 1, 0])
        XCTAssertEqual(r.reply, [5, 0])
        XCTAssertEqual(r.next, .readMore)
        r = feed(&m, [5, 1, 0, 1, 192, 168, 77, 10, 0, 80])
        XCTAssertEqual(r.reply, [])
        XCTAssertEqual(r.next, .request(SOCKSRequest(command: .connect, destination: Endpoint(IPAddress("192.168.77.10")!, 80))))
        XCTAssertTrue(m.isDone)
        XCTAssertEqual(m.mediator, "acme")
        XCTAssertNil(m.username)
    }

    func testDomainAndIPv6RequestsAndCommands() {
        var m = machine()
        let name = Array("files.lan".utf8)
        let r = feed(&m, [5, 2, 2, 0] + [5, 2, 0, 3, UInt8(name.count)] + name + [0x1f, 0x90])
        XCTAssertEqual(r.reply, [5, 0], "no-auth chosen among the two offered")
        XCTAssertEqual(r.next, .request(SOCKSRequest(command: .bind, destination: Endpoint(host: .name("files.lan"), port: 8080))))

        var m6 = machine()
        let v6 = IPAddress("fd00::10")!
        let r6 = feed(&m6, [5, 1, 0, 5, 3, 0, 4] + v6.bytes + [0, 53])
        XCTAssertEqual(r6.next, .request(SOCKSRequest(command: .udpAssociate, destination: Endpoint(v6, 53))))
    }

    func testIPLiteralWrittenAsNameBecomesAnAddress() {
        var m = machine()
        let name = Array("10.1.2.3".utf8)
        let r = feed(&m, [5, 1, 0, 5, 1, 0, 3, UInt8(name.count)] + name + [0, 22])
        XCTAssertEqual(r.next, .request(SOCKSRequest(command: .connect, destination: Endpoint(IPAddress("10.1.2.3")!, 22))))
    }

    func testByteByByteArrivalAndLeftover() {
        var m = machine(.usernamePassword)
        let bytes: [UInt8] =
            [5, 1, 2] + [1, 5] + Array("alice".utf8) + [6] + Array("secret".utf8) + [5, 1, 0, 1, 10, 0, 0, 1, 1, 0] + [0x47, 0x45]
        var replies: [UInt8] = []
        var request: SOCKSRequest?
        for b in bytes where request == nil {
            let r = feed(&m, [b])
            replies += r.reply
            if case .request(let q) = r.next { request = q } else { XCTAssertEqual(r.next, .readMore) }
        }
        XCTAssertEqual(replies, [5, 2, 1, 0])
        XCTAssertEqual(request, SOCKSRequest(command: .connect, destination: Endpoint(IPAddress("10.0.0.1")!, 256)))
        XCTAssertEqual(m.username, "alice")
        XCTAssertEqual(Array(m.leftover.readableBytesView), [], "byte by byte: nothing was sent past the request yet")

        var whole = machine(.usernamePassword)
        let r = feed(&whole, bytes)
        XCTAssertEqual(r.reply, [5, 2, 1, 0], "method selection and auth status in one write")
        XCTAssertEqual(Array(whole.leftover.readableBytesView), [0x47, 0x45], "bytes after the request are kept for the relay")
    }

    func testUsernameChoosesMediator() {
        var m = machine(.usernamePassword)
        let r = feed(&m, [5, 1, 2, 1, 10] + Array("alice@lab2".utf8) + [6] + Array("secret".utf8))
        XCTAssertEqual(r.reply, [5, 2, 1, 0])
        XCTAssertEqual(m.mediator, "lab2")
    }

    func testWrongPasswordIsRefusedWithStatus1AndClosed() {
        var m = machine(.usernamePassword)
        let r = feed(&m, [5, 1, 2, 1, 5] + Array("alice".utf8) + [5] + Array("wrong".utf8) + [5, 1, 0, 1, 10, 0, 0, 1, 0, 80])
        XCTAssertEqual(r.reply, [5, 2, 1, 1], "RFC 1929: a non-zero status, then the server closes")
        XCTAssertTrue(isClose(r.next))
        XCTAssertNil(m.username)
        XCTAssertTrue(m.refusedCredentials)
    }

    func testEmptyUsernameOrPasswordAndWrongSubnegotiationVersion() {
        for bad: [UInt8] in [[1, 0, 1, 0x41], [1, 1, 0x41, 0], [2, 5] + Array("alice".utf8) + [6] + Array("secret".utf8)] {
            var m = machine(.usernamePassword)
            _ = feed(&m, [5, 1, 2])
            let r = feed(&m, bad)
            XCTAssertEqual(r.reply, [1, 1], "\(bad)")
            XCTAssertTrue(isClose(r.next))
        }
    }

    func testNoAcceptableMethod() {
        var m = machine(.usernamePassword)
        let r = feed(&m, [5, 1, 0])
        XCTAssertEqual(r.reply, [5, 0xff], "only no-auth offered where a password is required")
        XCTAssertTrue(isClose(r.next))
        XCTAssertFalse(m.refusedCredentials, "no credentials were offered")
        var empty = machine()
        XCTAssertEqual(feed(&empty, [5, 0]).reply, [5, 0xff], "NMETHODS 0")
    }

    func testNotSOCKS5IsClosedWithoutReply() {
        for bad: [UInt8] in [[4, 1, 0, 80, 10, 0, 0, 1, 0], Array("GET / HTTP/1.1\r\n".utf8)] {
            var m = machine()
            let r = feed(&m, bad)
            XCTAssertEqual(r.reply, [])
            XCTAssertTrue(isClose(r.next))
        }
        var m = machine()
        _ = feed(&m, [5, 1, 0])
        let r = feed(&m, [4, 1, 0, 1, 10, 0, 0, 1, 0, 80])
        XCTAssertEqual(r.reply, [])
        XCTAssertTrue(isClose(r.next), "a request of another version")
    }

    func testUnknownCommandGetsReply7() {
        var m = machine()
        _ = feed(&m, [5, 1, 0])
        let r = feed(&m, [5, 9, 0, 1, 10, 0, 0, 1, 0, 80])
        XCTAssertEqual(r.reply, [5, 7, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertTrue(isClose(r.next))
    }

    func testUnknownAddressTypeGetsReply8() {
        var m = machine()
        _ = feed(&m, [5, 1, 0])
        let r = feed(&m, [5, 1, 0, 2, 10, 0, 0, 1, 0, 80])
        XCTAssertEqual(r.reply, [5, 8, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertTrue(isClose(r.next))
    }

    func testBadNamesAndReservedByteGetGeneralFailure() {
        for bad: [UInt8] in [
            [5, 1, 0, 3, 0, 0, 80], [5, 1, 0, 3, 3, 0x61, 0, 0x62, 0, 80], [5, 1, 0, 3, 2, 0xff, 0xfe, 0, 80],
            [5, 1, 7, 1, 1, 2, 3, 4, 0, 80],
        ] {
            var m = machine()
            _ = feed(&m, [5, 1, 0])
            let r = feed(&m, bad)
            XCTAssertEqual(r.reply, [5, 1, 0, 1, 0, 0, 0, 0, 0, 0], "\(bad)")
            XCTAssertTrue(isClose(r.next))
        }
    }

    func testLongestNameIsAccepted() {
        var m = machine()
        _ = feed(&m, [5, 1, 0])
        let name = [UInt8](repeating: 0x61, count: 255)
        let r = feed(&m, [5, 1, 0, 3, 255] + name + [0, 80])
        XCTAssertEqual(
            r.next,
            .request(SOCKSRequest(command: .connect, destination: Endpoint(host: .name(String(repeating: "a", count: 255)), port: 80))))
    }

    func testNothingAfterTheHandshakeIsParsed() {
        var m = machine()
        _ = feed(&m, [5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80])
        XCTAssertTrue(isClose(feed(&m, [5, 1, 0]).next))
    }

    func testReplyLayouts() {
        XCTAssertEqual(
            Array(SOCKSServerHandshake.reply(.succeeded, bound: Endpoint(IPAddress("192.168.77.2")!, 40000)).readableBytesView),
            [5, 0, 0, 1, 192, 168, 77, 2, 0x9c, 0x40])
        XCTAssertEqual(
            Array(SOCKSServerHandshake.reply(.succeeded, bound: Endpoint(IPAddress("fd00::2")!, 1)).readableBytesView),
            [5, 0, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1])
        XCTAssertEqual(Array(SOCKSServerHandshake.reply(.notAllowed).readableBytesView), [5, 2, 0, 1, 0, 0, 0, 0, 0, 0])
    }
}
