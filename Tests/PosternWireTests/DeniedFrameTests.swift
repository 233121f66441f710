import NIOCore
import PosternWire
import XCTest

/// DENIED and OPEN's flags byte (docs/protocol.md §5.1, §6.5; vectors §8.39, §8.40): the additive
/// report of datagrams the mediator's policy dropped, and what a forged or malformed one gets.
final class DeniedFrameTests: XCTestCase {
    func testRoundTrips() {
        assertRoundTrip(.denied(.init(portID: 1, count: 1)))
        assertRoundTrip(.denied(.init(portID: .max, count: .max)))
        assertRoundTrip(.open(.init(requestID: 1, transport: .udp, exact: true, address: .anyV6, port: 53, flags: .reportDenied)))
        assertRoundTrip(.open(.init(requestID: 1, transport: .udp, exact: false, address: .anyV4, port: 0, flags: [])))
        // Unknown flag bits survive decoding (a mediator ignores them).
        assertRoundTrip(.open(.init(requestID: 1, transport: .tcp, exact: false, address: .anyV4, port: 0, flags: .init(rawValue: 0xff))))
    }

    /// An OPEN without flags is byte for byte the original 13-byte OPEN (vector §8.10): what an older
    /// mediator, which never set capability bit 9, still gets.
    func testOpenWithoutFlagsIsTheOriginal() throws {
        var buffer = ByteBuffer()
        buffer.writeFrame(.open(.init(requestID: 1, transport: .tcp, exact: false, address: .anyV4, port: 8000)))
        XCTAssertEqual(buffer.readableBytes, 6 + 13)
        var decoder = FrameDecoder()
        guard case .open(let o) = try decoder.next(&buffer) else { return XCTFail("not an OPEN") }
        XCTAssertNil(o.flags)
    }

    func testMalformedDeniedIsAnError() {
        // count 0 reports nothing: refused, as WINDOW's increment 0 is.
        XCTAssertThrowsError(try decode(type: 0x2b, [0, 0, 0, 3, 0, 0, 0, 0])) {
            XCTAssertEqual($0 as? WireError, .invalidValue(field: "count", value: "0"))
        }
        XCTAssertThrowsError(try decode(type: 0x2b, [0, 0, 0, 3, 0, 0, 1])) {
            XCTAssertEqual($0 as? WireError, .truncated(frame: "DENIED"))
        }
        XCTAssertThrowsError(try decode(type: 0x2b, [])) { XCTAssertEqual($0 as? WireError, .truncated(frame: "DENIED")) }
        XCTAssertThrowsError(try decode(type: 0x2b, [0, 0, 0, 3, 0, 0, 0, 1, 9])) {
            XCTAssertEqual($0 as? WireError, .trailingBytes(frame: "DENIED", count: 1))
        }
        // A second byte after OPEN's flags is not a longer form.
        XCTAssertThrowsError(try decode(type: 0x10, [0, 0, 0, 1, 17, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0])) {
            XCTAssertEqual($0 as? WireError, .trailingBytes(frame: "OPEN", count: 1))
        }
    }

    /// Random bytes as DENIED and OPEN payloads: an error or a frame, never a crash; whatever decodes
    /// encodes back to the same bytes.
    func testRandomPayloadsNeverCrash() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let type: UInt8 = Bool.random(using: &rng) ? 0x2b : 0x10
            let bytes = (0..<Int.random(in: 0...20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            guard let frame = try? decode(type: type, bytes) else { continue }
            var out = ByteBuffer()
            out.writeFrame(frame)
            XCTAssertEqual(Array(out.readableBytesView.dropFirst(6)), bytes)
        }
    }

    private func decode(type: UInt8, _ payload: [UInt8]) throws -> Frame? {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(payload.count))
        buffer.writeInteger(type)
        buffer.writeInteger(UInt8(0))
        buffer.writeBytes(payload)
        var decoder = FrameDecoder()
        return try decoder.next(&buffer)
    }
}
