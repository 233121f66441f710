import NIOCore
import PosternWire
import XCTest

/// OPEN, REDIRECT, CONNECT, LISTEN, CLOSE and their answers DONE, FAILED (docs/protocol.md §5).
final class RequestFrameTests: XCTestCase {
    let addresses: [IPAddress] = [
        .anyV4, .anyV6, ipv4("192.168.77.10"), ipv4("255.255.255.255"), ipv6("fd00::10"), ipv6("::ffff:10.0.0.1"),
    ]
    let hosts: [PosternWire.Host] = [
        .ip(ipv4("192.168.77.10")), .ip(ipv6("fd00::10")), .ip(.anyV4), .name("intranet.lan"), .name("a"),
        .name(String(repeating: "n", count: 255)), .name("bücher.example"),
    ]

    func testOpenRoundTrips() {
        for transport in [Frame.Transport.tcp, .udp] {
            for exact in [true, false] {
                for address in addresses {
                    for port: UInt16 in [0, 1, 8000, .max] {
                        assertRoundTrip(.open(.init(requestID: 1, transport: transport, exact: exact, address: address, port: port)))
                    }
                }
            }
        }
        assertRoundTrip(.open(.init(requestID: .max, transport: .udp, exact: true, address: .anyV6, port: 53)))
    }

    func testTransportCodesAreIPProtocolNumbers() {
        XCTAssertEqual(Frame.Transport.tcp.rawValue, 6)
        XCTAssertEqual(Frame.Transport.udp.rawValue, 17)
        XCTAssertEqual("\(Frame.Transport.tcp)", "tcp")
        XCTAssertEqual("\(Frame.Transport.udp)", "udp")
    }

    func testRedirectRoundTrips() {
        for exact in [true, false] {
            for address in addresses {
                assertRoundTrip(.redirect(.init(requestID: 9, exact: exact, address: address, port: 5000)))
            }
        }
        assertRoundTrip(.redirect(.init(requestID: 0, exact: false, address: .anyV4, port: 0)))
    }

    func testConnectRoundTrips() {
        for host in hosts {
            for portID: UInt32 in [0, 1, .max] {
                assertRoundTrip(.connect(.init(requestID: 3, portID: portID, destination: Endpoint(host: host, port: 80))))
            }
        }
        assertRoundTrip(.connect(.init(requestID: .max, portID: 0, destination: Endpoint(host: .name("x"), port: .max))))
    }

    func testListenAndCloseRoundTrip() {
        for backlog: UInt16 in [0, 1, 128, .max] {
            assertRoundTrip(.listen(.init(requestID: 6, portID: 1, backlog: backlog)))
        }
        assertRoundTrip(.listen(.init(requestID: .max, portID: .max, backlog: 128)))
        assertRoundTrip(.close(.init(requestID: 7, portID: 1)))
        assertRoundTrip(.close(.init(requestID: 0, portID: 0)))
        assertRoundTrip(.close(.init(requestID: .max, portID: .max)))
    }

    func testDoneRoundTrips() {
        for address in addresses {
            assertRoundTrip(.done(.init(requestID: 1, portID: 1, local: Endpoint(address, 8000))))
        }
        assertRoundTrip(.done(.init(requestID: .max, portID: .max, local: Endpoint(.anyV4, 0))))
    }

    func testFailedRoundTrips() {
        for raw in UInt16(0)...25 {
            assertRoundTrip(.failed(.init(requestID: 3, code: ErrorCode(rawValue: raw), errno: 111, message: "Connection refused")))
        }
        for errno: Int32 in [0, 1, -1, .min, .max] {
            assertRoundTrip(.failed(.init(requestID: 1, code: .internalError, errno: errno, message: "")))
        }
        assertRoundTrip(.failed(.init(requestID: 1, code: .unknown(999), errno: 0, message: String(repeating: "ü", count: 32767))))
        // errno is a signed 32-bit big-endian integer.
        XCTAssertEqual(
            Array(payload(of: .failed(.init(requestID: 0, code: .refused, errno: -2, message: ""))))[6..<10], [0xff, 0xff, 0xff, 0xfe])
    }

    // MARK: - Malformed

    func testBadTransportIsRejected() {
        for t: UInt8 in [0, 1, 7, 16, 18, 255] {
            assertDecodeThrows(
                rawFrame(type: 0x10, payload: [0, 0, 0, 1, t, 0, 1, 0, 0, 0, 0, 0x1f, 0x40]),
                .invalidValue(field: "transport", value: String(t)))
        }
    }

    func testBadBoolIsRejected() {
        for b: UInt8 in [2, 0x80, 0xff] {
            assertDecodeThrows(
                rawFrame(type: 0x10, payload: [0, 0, 0, 1, 6, b, 1, 0, 0, 0, 0, 0x1f, 0x40]),
                .invalidValue(field: "exact", value: String(b)))
            assertDecodeThrows(
                rawFrame(type: 0x11, payload: [0, 0, 0, 1, b, 1, 0, 0, 0, 0, 0x13, 0x88]), .invalidValue(field: "exact", value: String(b)))
        }
    }

    func testBadAddressTypeIsRejected() {
        for t: UInt8 in [0, 2, 5, 6, 0xff] {
            let expected = WireError.invalidValue(field: "address type", value: String(t))
            assertDecodeThrows(rawFrame(type: 0x10, payload: [0, 0, 0, 1, 6, 0, t, 0, 0, 0, 0, 0x1f, 0x40]), expected)
            assertDecodeThrows(rawFrame(type: 0x11, payload: [0, 0, 0, 1, 0, t, 0, 0, 0, 0, 0x13, 0x88]), expected)
            assertDecodeThrows(rawFrame(type: 0x12, payload: [0, 0, 0, 1, 0, 0, 0, 0, t, 0, 0, 0, 0, 0, 80]), expected)
            assertDecodeThrows(rawFrame(type: 0x18, payload: [0, 0, 0, 1, 0, 0, 0, 1, t, 0, 0, 0, 0, 0, 80]), expected)
        }
    }

    /// Names are allowed only where the mediator resolves them: CONNECT's destination (§2.2).
    func testNamesOnlyInConnect() {
        let expected = WireError.invalidValue(field: "address type", value: "name not allowed here")
        let name: [UInt8] = [3, 3, 0x61, 0x62, 0x63]
        assertDecodeThrows(rawFrame(type: 0x10, payload: [0, 0, 0, 1, 6, 0] + name + [0, 80]), expected)
        assertDecodeThrows(rawFrame(type: 0x11, payload: [0, 0, 0, 1, 0] + name + [0, 80]), expected)
        assertDecodeThrows(rawFrame(type: 0x18, payload: [0, 0, 0, 1, 0, 0, 0, 1] + name + [0, 80]), expected)
        XCTAssertEqual(
            try decodeOne(rawFrame(type: 0x12, payload: [0, 0, 0, 1, 0, 0, 0, 0] + name + [0, 80])),
            .connect(.init(requestID: 1, portID: 0, destination: Endpoint(host: .name("abc"), port: 80))))
    }

    func testEmptyOrInvalidNameIsRejected() {
        assertDecodeThrows(
            rawFrame(type: 0x12, payload: [0, 0, 0, 1, 0, 0, 0, 0, 3, 0, 0, 80]), .invalidValue(field: "host name", value: "empty"))
        for bad: [UInt8] in [
            [0xff], [0xc3], [0x61, 0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf0, 0x90, 0x80], [0xf0, 0x90, 0x80, 0x41],
        ] {
            assertDecodeThrows(
                rawFrame(type: 0x12, payload: [0, 0, 0, 1, 0, 0, 0, 0, 3, UInt8(bad.count)] + bad + [0, 80]),
                .invalidValue(field: "host name", value: "not valid UTF-8"), "\(bad.hex)")
        }
    }

    func testRequestsTruncated() {
        assertDecodeThrows(rawFrame(type: 0x10, payload: [0, 0, 0, 1, 6, 0, 1, 0, 0]), .truncated(frame: "OPEN"))
        assertDecodeThrows(
            rawFrame(type: 0x10, payload: [0, 0, 0, 1, 6, 0, 4] + [UInt8](repeating: 0, count: 15)), .truncated(frame: "OPEN"))
        assertDecodeThrows(rawFrame(type: 0x12, payload: [0, 0, 0, 1, 0, 0, 0, 0, 3, 5, 0x61]), .truncated(frame: "CONNECT"))
        assertDecodeThrows(rawFrame(type: 0x12, payload: [0, 0, 0, 1, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0]), .truncated(frame: "CONNECT"))
        assertDecodeThrows(rawFrame(type: 0x13, payload: [0, 0, 0, 1, 0, 0, 0, 1, 0]), .truncated(frame: "LISTEN"))
        assertDecodeThrows(rawFrame(type: 0x14, payload: [0, 0, 0, 1]), .truncated(frame: "CLOSE"))
        assertDecodeThrows(rawFrame(type: 0x19, payload: [0, 0, 0, 1, 0, 1, 0, 0, 0, 111, 0, 4, 0x61]), .truncated(frame: "FAILED"))
    }

    func testRequestsRejectTrailingBytes() {
        assertDecodeThrows(rawFrame(type: 0x14, payload: [0, 0, 0, 1, 0, 0, 0, 1, 0]), .trailingBytes(frame: "CLOSE", count: 1))
        assertDecodeThrows(rawFrame(type: 0x13, payload: [0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0]), .trailingBytes(frame: "LISTEN", count: 2))
        assertDecodeThrows(
            rawFrame(type: 0x19, payload: [0, 0, 0, 1, 0, 1, 0, 0, 0, 111, 0, 1, 0x61, 0x62]), .trailingBytes(frame: "FAILED", count: 1))
    }
}
