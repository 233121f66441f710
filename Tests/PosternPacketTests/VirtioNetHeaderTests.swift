import NIOCore
import PosternPacket
import XCTest

final class VirtioNetHeaderTests: XCTestCase {
    func testParsesTheKernelsLittleEndianLayout() throws {
        // flags NEEDS_CSUM, TCPV4, hdr_len 52, gso_size 1448, csum_start 20, csum_offset 16.
        let bytes: [UInt8] = [0x01, 0x01, 52, 0, 0xa8, 0x05, 20, 0, 16, 0]
        let h = try XCTUnwrap(VirtioNetHeader(ByteBuffer(bytes: bytes), at: 0))
        XCTAssertEqual(h.flags, VirtioNetHeader.needsChecksum)
        XCTAssertEqual(h.gso, .tcpV4)
        XCTAssertEqual(h.headerLength, 52)
        XCTAssertEqual(h.gsoSize, 1448)
        XCTAssertEqual(h.checksumStart, 20)
        XCTAssertEqual(h.checksumOffset, 16)
        XCTAssertEqual(h.bytes, bytes)
    }

    func testRoundTripAndPlain() throws {
        let h = VirtioNetHeader(flags: 1, gso: .udpL4, headerLength: 48, gsoSize: 1200, checksumStart: 40, checksumOffset: 6)
        var buffer = ByteBuffer(bytes: [9, 9])
        buffer.moveReaderIndex(forwardBy: 1)
        h.write(to: &buffer)
        XCTAssertEqual(VirtioNetHeader(buffer, at: buffer.readerIndex + 1), h)
        XCTAssertEqual(VirtioNetHeader.plain.bytes, [UInt8](repeating: 0, count: 10))
    }

    func testShortOrUnknown() {
        XCTAssertNil(VirtioNetHeader(ByteBuffer(bytes: [UInt8](repeating: 0, count: 9)), at: 0))
        XCTAssertNil(VirtioNetHeader(ByteBuffer(bytes: [UInt8](repeating: 0, count: 12)), at: 3))
        let unknown = VirtioNetHeader(ByteBuffer(bytes: [0, 9, 0, 0, 0, 0, 0, 0, 0, 0]), at: 0)
        XCTAssertNotNil(unknown)
        XCTAssertNil(unknown?.gso)
        // The ECN bit does not change the type.
        XCTAssertEqual(VirtioNetHeader(ByteBuffer(bytes: [0, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]), at: 0)?.gso, .tcpV4)
    }
}
