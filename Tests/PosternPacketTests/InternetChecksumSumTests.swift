import NIOCore
import PosternPacket
import XCTest

final class InternetChecksumSumTests: XCTestCase {
    /// The fast sum agrees with the byte-wise checksum for every length and alignment.
    func testAgreesWithByteWiseChecksum() {
        var rng = SystemRandomNumberGenerator()
        // Past 4 rounds of the 32-byte loop, with every tail length after it.
        for length in Array(0..<200) + [1_399, 1_400, 1_401, 9_000, 65_535] {
            for skip in 0..<3 {
                let bytes = (0..<(length + skip)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                var buffer = ByteBuffer(bytes: bytes)
                buffer.moveReaderIndex(forwardBy: skip)
                let fast = ~InternetChecksum.sum(buffer, at: skip, length: length)
                XCTAssertEqual(fast, InternetChecksum.compute(buffer, at: skip, length: length), "length \(length) skip \(skip)")
            }
        }
        let ones = ByteBuffer(bytes: [UInt8](repeating: 0xff, count: 4000))
        XCTAssertEqual(~InternetChecksum.sum(ones, at: 0, length: 4000), InternetChecksum.compute(ones, at: 0, length: 4000))
    }

    func testPiecesAddUp() {
        let bytes = (0..<301).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let buffer = ByteBuffer(bytes: bytes)
        let whole = InternetChecksum.sum(buffer, at: 0, length: 301)
        let parts = InternetChecksum.sum(buffer, at: 100, length: 201, initial: InternetChecksum.sum(buffer, at: 0, length: 100))
        XCTAssertEqual(whole, parts)
    }

    func testOutOfRangeSumsNothing() {
        let buffer = ByteBuffer(bytes: [1, 2, 3])
        XCTAssertEqual(InternetChecksum.sum(buffer, at: 2, length: 5, initial: 7), 7)
        XCTAssertEqual(InternetChecksum.sum(buffer, at: 0, length: -1), 0)
    }
}
