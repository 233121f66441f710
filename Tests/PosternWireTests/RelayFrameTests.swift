import NIOCore
import PosternWire
import XCTest

/// DATA, DATAGRAM, WINDOW, ACCEPTED, FINISHED, RESET (docs/protocol.md §6).
final class RelayFrameTests: XCTestCase {
    func testDataRoundTrips() {
        assertRoundTrip(.data(.init(portID: 1, bytes: ByteBuffer())))
        assertRoundTrip(.data(.init(portID: 0, bytes: buffer([0]))))
        assertRoundTrip(.data(.init(portID: .max, bytes: buffer("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))))
        var rng = SeededGenerator(seed: 42)
        let mebibyte = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        assertRoundTrip(.data(.init(portID: 7, bytes: buffer(mebibyte))))
    }

    func testZeroLengthDataIsJustThePortID() {
        XCTAssertEqual(encode(.data(.init(portID: 5, bytes: ByteBuffer()))), [0, 0, 0, 4, 0x20, 0, 0, 0, 0, 5])
    }

    /// The largest payload the default decoder takes, and one byte more.
    func testDataAtTheLimit() throws {
        let limit = Int(FrameDecoder.defaultMaxPayload)
        XCTAssertEqual(limit, (1 << 20) + 1024)
        let atLimit = Frame.data(.init(portID: 1, bytes: buffer([UInt8](repeating: 0xab, count: limit - 4))))
        assertRoundTrip(atLimit)
        let over = encode(.data(.init(portID: 1, bytes: buffer([UInt8](repeating: 0xab, count: limit - 3)))))
        assertDecodeThrows(over, .frameTooLarge(length: UInt32(limit + 1), limit: UInt32(limit)))
        // A receiver with a bigger limit takes it.
        assertRoundTrip(.data(.init(portID: 1, bytes: buffer([UInt8](repeating: 1, count: 4 << 20)))), maxPayload: 8 << 20)
    }

    /// The relay's zero-copy header is the same as a whole DATA frame's.
    func testDataPrefixMatchesWholeFrame() {
        let bytes: [UInt8] = Array("some socket bytes".utf8)
        var header = ByteBuffer()
        let written = header.writeDataPrefix(portID: 0x0102_0304, count: bytes.count)
        XCTAssertEqual(written, Frame.headerLength + Frame.Data.prefixLength)
        XCTAssertEqual(header.readableByteArray + bytes, encode(.data(.init(portID: 0x0102_0304, bytes: buffer(bytes)))))
    }

    func testDataKeepsOnlyReadableBytes() throws {
        var b = buffer("xxhello")
        b.moveReaderIndex(forwardBy: 2)
        XCTAssertEqual(encode(.data(.init(portID: 2, bytes: b))), GoldenVectors.all.first { $0.section == "8.19" }!.bytes)
    }

    func testDatagramRoundTrips() {
        for peer in ["192.168.77.53:53", "[fd00::53]:53", "0.0.0.0:0", "255.255.255.255:65535", "[::]:1"] {
            assertRoundTrip(.datagram(.init(portID: 3, peer: endpoint(peer), bytes: buffer([1, 2, 3]))))
            assertRoundTrip(.datagram(.init(portID: 3, peer: endpoint(peer), bytes: ByteBuffer())))
        }
        assertRoundTrip(.datagram(.init(portID: .max, peer: endpoint("10.0.0.1:9"), bytes: buffer([UInt8](repeating: 7, count: 65507)))))
    }

    /// DATAGRAM peers are addresses; a name is refused (the mediator resolves names only in CONNECT).
    func testDatagramPeerMustBeAnAddress() {
        assertDecodeThrows(
            rawFrame(type: 0x21, payload: [0, 0, 0, 3, 3, 1, 0x61, 0, 53, 0xde]),
            .invalidValue(field: "address type", value: "name not allowed here"))
        assertDecodeThrows(
            rawFrame(type: 0x21, payload: [0, 0, 0, 3, 9, 1, 2, 3, 4, 0, 53]), .invalidValue(field: "address type", value: "9"))
        assertDecodeThrows(rawFrame(type: 0x21, payload: [0, 0, 0, 3, 1, 10, 0, 0, 1, 0]), .truncated(frame: "DATAGRAM"))
        assertDecodeThrows(rawFrame(type: 0x21, payload: [0, 0, 0]), .truncated(frame: "DATAGRAM"))
    }

    func testWindowRoundTripsAndRejectsZero() {
        for increment: UInt32 in [1, 65536, 1 << 31, .max] {
            assertRoundTrip(.window(.init(portID: 2, increment: increment)))
        }
        assertDecodeThrows(rawFrame(type: 0x22, payload: [0, 0, 0, 2, 0, 0, 0, 0]), .invalidValue(field: "window increment", value: "0"))
        assertDecodeThrows(rawFrame(type: 0x22, payload: [0, 0, 0, 2, 0, 0, 1]), .truncated(frame: "WINDOW"))
        assertDecodeThrows(rawFrame(type: 0x22, payload: [0, 0, 0, 2, 0, 0, 1, 0, 0]), .trailingBytes(frame: "WINDOW", count: 1))
    }

    func testAcceptedRoundTrips() {
        for peer in ["192.168.77.20:51000", "[fd00::20]:40000", "0.0.0.0:0"] {
            assertRoundTrip(.accepted(.init(listenerID: 1, portID: 4, peer: endpoint(peer))))
        }
        assertRoundTrip(.accepted(.init(listenerID: .max, portID: .max, peer: endpoint("1.2.3.4:65535"))))
        assertDecodeThrows(
            rawFrame(type: 0x23, payload: [0, 0, 0, 1, 0, 0, 0, 4, 3, 1, 0x61, 0, 80]),
            .invalidValue(field: "address type", value: "name not allowed here"))
        assertDecodeThrows(
            rawFrame(type: 0x23, payload: [0, 0, 0, 1, 0, 0, 0, 4, 1, 1, 2, 3, 4, 0, 80, 0]), .trailingBytes(frame: "ACCEPTED", count: 1))
    }

    func testFinishedAndResetRoundTrip() {
        for portID: UInt32 in [0, 1, .max] {
            assertRoundTrip(.finished(.init(portID: portID)))
            for raw in UInt16(0)...22 {
                assertRoundTrip(.reset(.init(portID: portID, code: ErrorCode(rawValue: raw))))
            }
            assertRoundTrip(.reset(.init(portID: portID, code: .unknown(.max))))
        }
        assertDecodeThrows(rawFrame(type: 0x24, payload: [0, 0, 2]), .truncated(frame: "FINISHED"))
        assertDecodeThrows(rawFrame(type: 0x24, payload: [0, 0, 0, 2, 0]), .trailingBytes(frame: "FINISHED", count: 1))
        assertDecodeThrows(rawFrame(type: 0x25, payload: [0, 0, 0, 2, 0]), .truncated(frame: "RESET"))
        assertDecodeThrows(rawFrame(type: 0x25, payload: [0, 0, 0, 2, 0, 12, 0]), .trailingBytes(frame: "RESET", count: 1))
    }
}
