import NIOCore
import PosternPacket
import XCTest

final class InternetChecksumTests: XCTestCase {
    /// The IPv4 header of Wikipedia's "IPv4 header checksum" example: checksum b861.
    let header: [UInt8] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ]

    func testKnownHeader() {
        var zeroed = header
        zeroed[10] = 0
        zeroed[11] = 0
        XCTAssertEqual(InternetChecksum.compute(ByteBuffer(bytes: zeroed), at: 0, length: 20), 0xb861)
        XCTAssertTrue(InternetChecksum.isValidIPv4Header(ByteBuffer(bytes: header), headerLength: 20))
        var broken = header
        broken[15] ^= 1
        XCTAssertFalse(InternetChecksum.isValidIPv4Header(ByteBuffer(bytes: broken), headerLength: 20))
        XCTAssertFalse(InternetChecksum.isValidIPv4Header(ByteBuffer(bytes: Array(header.prefix(19))), headerLength: 20))
    }

    /// RFC 1071 §3's example: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2, so the checksum is 220d.
    /// An odd length pads the last byte with zero; a reader index other than 0 is honoured.
    func testRFC1071ExampleOddLengthAndOffset() {
        XCTAssertEqual(
            InternetChecksum.compute(ByteBuffer(bytes: [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), at: 0, length: 8), 0x220d)
        XCTAssertEqual(InternetChecksum.compute(ByteBuffer(bytes: [0x12]), at: 0, length: 1), ~UInt16(0x1200))
        var shifted = ByteBuffer(bytes: [0xff, 0xff] + header)
        shifted.moveReaderIndex(forwardBy: 2)
        XCTAssertTrue(InternetChecksum.isValidIPv4Header(shifted, headerLength: 20))
    }
}
