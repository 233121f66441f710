import NIOCore
import PosternWire
import XCTest

/// ECHO and ECHO_REPLY (docs/protocol.md §11; vectors in §8.28-8.29): round trips, and what a forged
/// frame gets.
final class EchoFrameTests: XCTestCase {
    func testRoundTrips() {
        assertRoundTrip(
            .echo(.init(requestID: 1, destination: IPAddress("192.168.77.10")!, ttl: 1, sequence: 0, size: 0, timeoutMillis: 0)))
        assertRoundTrip(
            .echo(.init(requestID: .max, destination: IPAddress("fd00::10")!, ttl: 255, sequence: .max, size: 1472, timeoutMillis: .max)))
        for family in [Frame.Echo.Family.any, .ipv4, .ipv6] {
            assertRoundTrip(
                .echo(.init(requestID: 3, host: .name("lanhost.lan"), family: family, ttl: 5, sequence: 2, size: 8, timeoutMillis: 900)))
        }
        // A family given with an address is not kept: the address has its own.
        let literal = Frame.Echo(
            requestID: 3, host: .ip(IPAddress("fd00:77::10")!), family: .ipv4, ttl: 5, sequence: 2, size: 8, timeoutMillis: 900)
        XCTAssertEqual(literal.family, .any)
        XCTAssertEqual(literal.destination, IPAddress("fd00:77::10"))
        XCTAssertNil(Frame.Echo(requestID: 3, host: .name("x"), ttl: 5, sequence: 2, size: 8, timeoutMillis: 900).destination)
        for outcome in [Frame.EchoReply.Outcome.reply, .timeExceeded, .unreachable, .noAnswer] {
            assertRoundTrip(
                .echoReply(
                    .init(
                        requestID: 7, outcome: outcome, icmpType: 11, icmpCode: 1, from: IPAddress("192.168.77.1")!, ttl: 63, size: 1472,
                        rttMicros: .max)))
        }
    }

    func testForgedFieldsAreRefused() {
        let echo: [UInt8] = [0, 0, 0, 10, 1, 192, 168, 77, 10, 64, 0, 1, 0, 56, 0, 0, 7, 208]
        XCTAssertEqual(
            try decodeOne(rawFrame(type: 0x17, payload: echo)),
            .echo(.init(requestID: 10, destination: IPAddress("192.168.77.10")!, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)))
        var bad = echo
        bad[9] = 0
        assertDecodeThrows(rawFrame(type: 0x17, payload: bad), .invalidValue(field: "ttl", value: "0"))
        bad = echo
        bad[12] = 0x05
        bad[13] = 0xc1  // 1473
        assertDecodeThrows(rawFrame(type: 0x17, payload: bad), .invalidValue(field: "echo size", value: "1473"))
        // A name (to a mediator with capability bit 7) carries the family byte after the timeout;
        // without it the frame is cut, with an unknown family it is refused.
        let named: [UInt8] = [0, 0, 0, 10, 3, 1, 0x61, 64, 0, 1, 0, 56, 0, 0, 7, 208]
        XCTAssertEqual(
            try decodeOne(rawFrame(type: 0x17, payload: named + [6])),
            .echo(.init(requestID: 10, host: .name("a"), family: .ipv6, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)))
        assertDecodeThrows(rawFrame(type: 0x17, payload: named), .truncated(frame: "ECHO"))
        assertDecodeThrows(rawFrame(type: 0x17, payload: named + [5]), .invalidValue(field: "echo family", value: "5"))
        assertDecodeThrows(rawFrame(type: 0x17, payload: named + [4, 0]), .trailingBytes(frame: "ECHO", count: 1))
        assertDecodeThrows(
            rawFrame(type: 0x17, payload: [0, 0, 0, 10, 3, 0, 64, 0, 1, 0, 56, 0, 0, 7, 208, 0]),
            .invalidValue(field: "host name", value: "empty"))
        // An address never carries a family byte: one more byte is trailing.
        assertDecodeThrows(rawFrame(type: 0x17, payload: echo + [4]), .trailingBytes(frame: "ECHO", count: 1))
        // A cut frame, bytes after the end.
        assertDecodeThrows(rawFrame(type: 0x17, payload: Array(echo.dropLast())), .truncated(frame: "ECHO"))
        assertDecodeThrows(rawFrame(type: 0x17, payload: echo + [0]), .trailingBytes(frame: "ECHO", count: 1))

        let reply: [UInt8] = [0, 0, 0, 10, 0, 0, 0, 1, 192, 168, 77, 10, 64, 0, 56, 0, 0, 2, 8]
        XCTAssertNotNil(try decodeOne(rawFrame(type: 0x1f, payload: reply)))
        var badReply = reply
        badReply[4] = 4
        assertDecodeThrows(rawFrame(type: 0x1f, payload: badReply), .invalidValue(field: "echo outcome", value: "4"))
        assertDecodeThrows(rawFrame(type: 0x1f, payload: Array(reply.prefix(10))), .truncated(frame: "ECHO_REPLY"))
        assertDecodeThrows(rawFrame(type: 0x1f, payload: reply + [1, 2]), .trailingBytes(frame: "ECHO_REPLY", count: 2))
    }

    func testCapabilityBits() {
        typealias C = MediatorEnvironment.Capabilities
        XCTAssertEqual(C.icmpDatagram.rawValue, 0x8)
        XCTAssertEqual(C.netAdmin.rawValue, 0x10)
        XCTAssertEqual(C.echoOffered.rawValue, 0x20)
        XCTAssertEqual(C.echoNames.rawValue, 0x80)
        XCTAssertEqual(C([.tun, .rawSockets, .tunOffered, .icmpDatagram, .netAdmin, .echoOffered]).rawValue, 0x3f)
    }
}
