import PosternPacket
import PosternWire
import XCTest

/// ICMPv6 echo building and parsing (docs/protocol.md §11) for `ctl ping`/`ctl traceroute` to IPv6
/// destinations: messages laid out as RFC 4443 §§3-4 and as the lab's hosts send them (lanhost
/// fd00:77::10 answering the mediator fd00:77::2; the gateway fd00:77::1 sending time exceeded for a
/// hop-limit-1 request toward 2001:db8:113::10). ICMPv6 sockets hand over the message alone.
final class ICMPv6MessageTests: XCTestCase {
    let lanhost = IPAddress("fd00:77::10")!
    let gateway = IPAddress("fd00:77::1")!
    let wan = IPAddress("2001:db8:113::10")!

    /// The request the mediator (fd00:77::2) sent to 2001:db8:113::10 with hop limit 1, id 0x1234,
    /// seq 1, 8 bytes of payload, as an error quotes it: the fixed IPv6 header, then the ICMPv6 bytes.
    let quotedRequest = ICMPMessageTests.hex(
        """
        6000 0000 0010 3a01 fd00 0077 0000 0000 0000 0000 0000 0002
        2001 0db8 0113 0000 0000 0000 0000 0010
        8000 5b1f 1234 0001 0809 0a0b 0c0d 0e0f
        """)

    func testBuildsAnEchoRequestWithAZeroChecksumForTheKernel() {
        let built = ICMPv6Message.echoRequest(identifier: 0x1234, sequence: 1, payload: Array(8...15))
        XCTAssertEqual(built, ICMPMessageTests.hex("8000 0000 1234 0001 0809 0a0b 0c0d 0e0f"))
        XCTAssertEqual(ICMPv6Message.echoRequest(identifier: 7, sequence: 0xfffe, payload: []), [128, 0, 0, 0, 0, 7, 0xff, 0xfe])
        // Our own request parses back as one, and answers nothing.
        let parsed = try? ICMPv6Message(parsing: built)
        XCTAssertEqual(parsed, .echoRequest(identifier: 0x1234, sequence: 1, payloadSize: 8))
        XCTAssertNil(parsed?.outcome(forEchoTo: lanhost, identifier: nil, sequence: 1, from: lanhost))
    }

    func testAnEchoReplyMatchesOnlyItsOwnRequest() throws {
        let reply = try ICMPv6Message(parsing: ICMPMessageTests.hex("8100 5a1f 1234 0001 0809 0a0b 0c0d 0e0f"))
        XCTAssertEqual(reply, .echoReply(identifier: 0x1234, sequence: 1, payloadSize: 8))
        XCTAssertEqual(reply.outcome(forEchoTo: lanhost, identifier: 0x1234, sequence: 1, from: lanhost), .reply)
        // A datagram socket's identifier is the kernel's: nil matches any.
        XCTAssertEqual(reply.outcome(forEchoTo: lanhost, identifier: nil, sequence: 1, from: lanhost), .reply)
        XCTAssertNil(reply.outcome(forEchoTo: lanhost, identifier: 0x1235, sequence: 1, from: lanhost), "someone else's identifier")
        XCTAssertNil(reply.outcome(forEchoTo: lanhost, identifier: 0x1234, sequence: 2, from: lanhost), "another sequence")
        XCTAssertNil(reply.outcome(forEchoTo: lanhost, identifier: 0x1234, sequence: 1, from: gateway), "a reply from elsewhere")
        XCTAssertNil(reply.outcome(forEchoTo: IPAddress("192.168.77.10")!, identifier: nil, sequence: 1, from: lanhost))
    }

    func testTimeExceededQuotingTheRequestIsTracerouteHop() throws {
        let message = try ICMPv6Message(parsing: ICMPMessageTests.hex("0300 0000 0000 0000") + quotedRequest)
        let quoted = ICMPMessage.QuotedEcho(destination: wan, identifier: 0x1234, sequence: 1)
        XCTAssertEqual(message, .error(type: 3, code: 0, info: 0, quoted: quoted))
        XCTAssertEqual(message.outcome(forEchoTo: wan, identifier: 0x1234, sequence: 1, from: gateway), .timeExceeded)
        XCTAssertEqual(message.outcome(forEchoTo: wan, identifier: nil, sequence: 1, from: gateway), .timeExceeded)
        XCTAssertNil(message.outcome(forEchoTo: wan, identifier: 0x4321, sequence: 1, from: gateway), "another sender's request")
        XCTAssertNil(message.outcome(forEchoTo: wan, identifier: 0x1234, sequence: 9, from: gateway))
        XCTAssertNil(message.outcome(forEchoTo: lanhost, identifier: 0x1234, sequence: 1, from: gateway), "quotes another destination")
    }

    func testUnreachableAndPacketTooBigAreUnreachableWithTheirCodeAndMTU() throws {
        let unreachable = try ICMPv6Message(parsing: ICMPMessageTests.hex("0103 0000 0000 0000") + quotedRequest)
        XCTAssertEqual(unreachable.outcome(forEchoTo: wan, identifier: 0x1234, sequence: 1, from: gateway), .unreachable)
        guard case .error(1, 3, 0, _) = unreachable else { return XCTFail("\(unreachable)") }
        let tooBig = try ICMPv6Message(parsing: ICMPMessageTests.hex("0200 0000 0000 0500") + quotedRequest)
        guard case .error(2, 0, 1280, _?) = tooBig else { return XCTFail("\(tooBig)") }
        XCTAssertEqual(tooBig.outcome(forEchoTo: wan, identifier: 0x1234, sequence: 1, from: gateway), .unreachable)
        XCTAssertEqual(ICMPv6Message.outcome(ofErrorType: 3), .timeExceeded)
        XCTAssertEqual(ICMPv6Message.outcome(ofErrorType: 1), .unreachable)
        XCTAssertEqual(ICMPv6Message.outcome(ofErrorType: 2), .unreachable)
        XCTAssertNil(ICMPv6Message.outcome(ofErrorType: 4), "a parameter problem does not answer an echo")
        XCTAssertNil(ICMPv6Message.outcome(ofErrorType: 129))
    }

    func testForgedAndTruncatedMessagesAnswerNothing() throws {
        XCTAssertThrowsError(try ICMPv6Message(parsing: [129, 0, 0, 0, 0, 1, 0])) {
            XCTAssertEqual($0 as? ICMPMessage.ParseError, .tooShort(7))
        }
        XCTAssertThrowsError(try ICMPv6Message(parsing: []))
        // An error whose quote is cut inside the IPv6 header, or inside the echo header, quotes nothing.
        for cut in [0, 20, 40, 47] {
            let m = try ICMPv6Message(parsing: ICMPMessageTests.hex("0300 0000 0000 0000") + quotedRequest.prefix(cut))
            XCTAssertEqual(m, .error(type: 3, code: 0, info: 0, quoted: nil), "cut at \(cut)")
            XCTAssertNil(m.outcome(forEchoTo: wan, identifier: nil, sequence: 1, from: gateway))
        }
        // A quote of UDP (next header 17), of IPv4, or of an echo reply is no echo request of ours.
        var udp = quotedRequest
        udp[6] = 17
        var v4 = quotedRequest
        v4[0] = 0x45
        var replyQuoted = quotedRequest
        replyQuoted[40] = 129
        for body in [udp, v4, replyQuoted] {
            let m = try ICMPv6Message(parsing: ICMPMessageTests.hex("0100 0000 0000 0000") + body)
            XCTAssertNil(m.outcome(forEchoTo: wan, identifier: nil, sequence: 1, from: gateway))
        }
        // Neighbour discovery and other types are other, never an answer.
        let solicitation = try ICMPv6Message(parsing: [135, 0, 0, 0, 0, 0, 0, 0] + Array(repeating: 0, count: 16))
        XCTAssertEqual(solicitation, .other(type: 135, code: 0))
        XCTAssertNil(solicitation.outcome(forEchoTo: wan, identifier: nil, sequence: 0, from: wan))
        // Random bytes never crash the parser.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...120, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = (try? ICMPv6Message(parsing: bytes))?.outcome(forEchoTo: wan, identifier: nil, sequence: 1, from: gateway)
        }
    }
}
