import PosternPacket
import PosternWire
import XCTest

/// ICMP echo building and parsing (docs/protocol.md §11) against packets captured in the lab with
/// tcpdump on the mediator's LAN interface: ping(8)'s echo to lanhost, lanhost's reply, and the time
/// exceeded the LAN gateway sent for a TTL-1 echo toward the WAN.
final class ICMPMessageTests: XCTestCase {
    static func hex(_ s: String) -> [UInt8] {
        let digits = s.filter(\.isHexDigit)
        return stride(from: 0, to: digits.count, by: 2).map {
            let i = digits.index(digits.startIndex, offsetBy: $0)
            return UInt8(digits[i...digits.index(after: i)], radix: 16)!
        }
    }

    let lanhost = IPAddress("192.168.77.10")!
    let wan = IPAddress("203.0.113.10")!
    /// 192.168.77.2 -> 192.168.77.10, id 0x380c, seq 1, 8 bytes of payload 00..07.
    let request = hex("4500 0024 d176 4000 4001 4e05 c0a8 4d02 c0a8 4d0a 0800 b3e2 380c 0001 0001 0203 0405 0607")
    /// The reply from 192.168.77.10, TTL 64.
    let reply = hex("4500 0024 cc21 0000 4001 935a c0a8 4d0a c0a8 4d02 0000 bbe2 380c 0001 0001 0203 0405 0607")
    /// 192.168.77.1 (the gateway) -> 192.168.77.2: time exceeded in transit, quoting the TTL-1 echo
    /// to 203.0.113.10 (id 0x3814, seq 1) whole.
    let timeExceeded = hex(
        """
        45c0 0040 0d5c 0000 4001 514d c0a8 4d01 c0a8 4d02 0b00 f4ff 0000 0000
        4500 0024 2988 4000 0101 069c c0a8 4d02 cb00 710a 0800 b3da 3814 0001 0001 0203 0405 0607
        """)

    func testBuildsTheRequestPingSentByteForByte() {
        let built = ICMPMessage.echoRequest(identifier: 0x380c, sequence: 1, payload: Array(0...7))
        XCTAssertEqual(built, Array(request[20...]))
        XCTAssertEqual(ICMPMessage.checksum(built), 0, "a message with its checksum sums to zero")
        // An odd payload length pads the checksum's last word with zero, and still sums to zero.
        XCTAssertEqual(ICMPMessage.checksum(ICMPMessage.echoRequest(identifier: 7, sequence: 9, payload: [1, 2, 3])), 0)
        XCTAssertEqual(ICMPMessage.echoRequest(identifier: 7, sequence: 9, payload: []).count, 8)
    }

    func testParsesTheCapturedReplyAndMatchesItToTheRequest() throws {
        let parsed = try ICMPMessage.parseIPv4(reply)
        XCTAssertEqual(parsed.source, lanhost)
        XCTAssertEqual(parsed.ttl, 64)
        XCTAssertEqual(parsed.message, .echoReply(identifier: 0x380c, sequence: 1, payloadSize: 8))
        let m = parsed.message
        XCTAssertEqual(m.outcome(forEchoTo: lanhost, identifier: 0x380c, sequence: 1, from: lanhost), .reply)
        XCTAssertEqual(m.outcome(forEchoTo: lanhost, identifier: nil, sequence: 1, from: lanhost), .reply, "datagram socket: no id check")
        XCTAssertNil(m.outcome(forEchoTo: lanhost, identifier: 0x380d, sequence: 1, from: lanhost), "another raw socket's echo")
        XCTAssertNil(m.outcome(forEchoTo: lanhost, identifier: 0x380c, sequence: 2, from: lanhost), "an earlier sequence")
        XCTAssertNil(m.outcome(forEchoTo: wan, identifier: 0x380c, sequence: 1, from: lanhost), "a reply from someone else")
        // Our own request, looped back to a raw socket, is not an answer.
        let ownRequest = try ICMPMessage.parseIPv4(request).message
        XCTAssertEqual(ownRequest, .echoRequest(identifier: 0x380c, sequence: 1, payloadSize: 8))
        XCTAssertNil(ownRequest.outcome(forEchoTo: lanhost, identifier: 0x380c, sequence: 1, from: lanhost))
    }

    func testParsesTheCapturedTimeExceededAndTheEchoItQuotes() throws {
        let parsed = try ICMPMessage.parseIPv4(timeExceeded)
        XCTAssertEqual(parsed.source, IPAddress("192.168.77.1"))
        XCTAssertEqual(
            parsed.message,
            .error(type: 11, code: 0, quoted: .init(destination: wan, identifier: 0x3814, sequence: 1)))
        let gateway = IPAddress("192.168.77.1")!
        XCTAssertEqual(parsed.message.outcome(forEchoTo: wan, identifier: 0x3814, sequence: 1, from: gateway), .timeExceeded)
        XCTAssertNil(
            parsed.message.outcome(forEchoTo: lanhost, identifier: 0x3814, sequence: 1, from: gateway), "quotes another destination")
        XCTAssertNil(parsed.message.outcome(forEchoTo: wan, identifier: 0x3815, sequence: 1, from: gateway))
        XCTAssertNil(parsed.message.outcome(forEchoTo: wan, identifier: 0x3814, sequence: 2, from: gateway))
    }

    func testDestinationUnreachableQuotingAnEcho() throws {
        // The same body as a host unreachable (type 3 code 1), checksum recomputed.
        var icmp = Array(timeExceeded[20...])
        icmp[0] = 3
        icmp[1] = 1
        icmp[2] = 0
        icmp[3] = 0
        let sum = ICMPMessage.checksum(icmp)
        icmp[2] = UInt8(sum >> 8)
        icmp[3] = UInt8(sum & 0xff)
        let m = try ICMPMessage(parsing: icmp)
        XCTAssertEqual(m.outcome(forEchoTo: wan, identifier: 0x3814, sequence: 1, from: IPAddress("192.168.77.1")!), .unreachable)
        // A redirect (type 5) quotes the request too, but answers nothing.
        icmp[0] = 5
        icmp[2] = 0
        icmp[3] = 0
        let redirectSum = ICMPMessage.checksum(icmp)
        icmp[2] = UInt8(redirectSum >> 8)
        icmp[3] = UInt8(redirectSum & 0xff)
        XCTAssertNil(try ICMPMessage(parsing: icmp).outcome(forEchoTo: wan, identifier: 0x3814, sequence: 1, from: wan))
    }

    /// What a forged or damaged packet does: an error, never a crash or a wrong match.
    func testDamagedAndForgedPacketsAreRefused() {
        var bad = reply
        bad[27] ^= 1  // the sequence: the ICMP checksum no longer holds
        XCTAssertThrowsError(try ICMPMessage.parseIPv4(bad)) { XCTAssertEqual($0 as? ICMPMessage.ParseError, .badChecksum) }
        bad = reply
        bad[8] = 63  // the TTL: the IPv4 header checksum no longer holds
        XCTAssertThrowsError(try ICMPMessage.parseIPv4(bad)) { XCTAssertEqual($0 as? ICMPMessage.ParseError, .badChecksum) }
        bad = reply
        bad[9] = 17  // UDP, not ICMP
        XCTAssertThrowsError(try ICMPMessage.parseIPv4(bad)) { XCTAssertEqual($0 as? ICMPMessage.ParseError, .notIPv4ICMP) }
        XCTAssertThrowsError(try ICMPMessage.parseIPv4([0x45, 0])) { XCTAssertEqual($0 as? ICMPMessage.ParseError, .notIPv4ICMP) }
        XCTAssertThrowsError(try ICMPMessage.parseIPv4(Array(reply[0..<24]))) {
            XCTAssertEqual($0 as? ICMPMessage.ParseError, .tooShort(4))
        }
        // An IHL past the packet's end.
        bad = reply
        bad[0] = 0x4f
        XCTAssertThrowsError(try ICMPMessage.parseIPv4(bad))
        // An error whose quote is cut short, or quotes UDP, matches no request.
        var cut = Array(timeExceeded[20..<(20 + 8 + 24)])
        cut[2] = 0
        cut[3] = 0
        var sum = ICMPMessage.checksum(cut)
        cut[2] = UInt8(sum >> 8)
        cut[3] = UInt8(sum & 0xff)
        XCTAssertEqual(try ICMPMessage(parsing: cut), .error(type: 11, code: 0, quoted: nil))
        var udp = Array(timeExceeded[20...])
        udp[8 + 9] = 17
        udp[2] = 0
        udp[3] = 0
        sum = ICMPMessage.checksum(udp)
        udp[2] = UInt8(sum >> 8)
        udp[3] = UInt8(sum & 0xff)
        XCTAssertEqual(try ICMPMessage(parsing: udp), .error(type: 11, code: 0, quoted: nil))
        // Every truncation of every capture parses or throws; none crashes.
        for packet in [request, reply, timeExceeded] {
            for n in 0..<packet.count {
                _ = try? ICMPMessage.parseIPv4(Array(packet[0..<n]))
                _ = try? ICMPMessage(parsing: Array(packet[0..<n]), verifyChecksum: false)
            }
        }
    }

    /// The error queue of a datagram socket hands back our own request, its checksum as sent.
    func testOwnRequestFromTheErrorQueue() throws {
        var icmp = Array(request[20...])
        icmp[4] = 0xff  // the kernel's identifier, checksum not updated
        XCTAssertEqual(
            try ICMPMessage(parsing: icmp, verifyChecksum: false), .echoRequest(identifier: 0xff0c, sequence: 1, payloadSize: 8))
        XCTAssertThrowsError(try ICMPMessage(parsing: icmp))
    }
}
