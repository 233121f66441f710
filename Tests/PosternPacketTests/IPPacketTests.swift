import NIOCore
import PosternPacket
import PosternWire
import XCTest

final class IPPacketTests: XCTestCase {
    /// An IPv4 header (no options) for a UDP packet with `payload` bytes after it.
    func ipv4(from src: [UInt8], to dst: [UInt8], payload: Int = 8, ihl: UInt8 = 5, proto: UInt8 = 17) -> [UInt8] {
        let header = Int(ihl) * 4
        let total = header + payload
        var b: [UInt8] = [0x40 | ihl, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, proto, 0, 0]
        b += src + dst
        b += [UInt8](repeating: 0, count: header - 20)
        b += [UInt8](repeating: 0xaa, count: payload)
        return b
    }

    func ipv6(from src: [UInt8], to dst: [UInt8], payload: Int = 8, next: UInt8 = 6) -> [UInt8] {
        var b: [UInt8] = [0x60, 0, 0, 0, UInt8(payload >> 8), UInt8(payload & 0xff), next, 64]
        b += src + dst
        b += [UInt8](repeating: 0xbb, count: payload)
        return b
    }

    let v6a: [UInt8] = [0xfd, 0, 0, 0x77] + [UInt8](repeating: 0, count: 11) + [0x10]
    let v6b: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [0x07]

    func testIPv4() throws {
        let p = try IPPacket(parsing: ByteBuffer(bytes: ipv4(from: [192, 168, 77, 10], to: [203, 0, 113, 10])))
        XCTAssertEqual(p.version, .v4)
        XCTAssertEqual(p.source, IPAddress("192.168.77.10"))
        XCTAssertEqual(p.destination, IPAddress("203.0.113.10"))
        XCTAssertEqual(p.transportProtocol, 17)
        XCTAssertEqual(p.headerLength, 20)
        XCTAssertEqual(p.totalLength, 28)
    }

    func testIPv4WithOptionsAndPadding() throws {
        var bytes = ipv4(from: [10, 0, 0, 1], to: [10, 0, 0, 2], payload: 4, ihl: 15, proto: 6)
        bytes += [0, 0, 0]  // link padding after the packet
        var buffer = ByteBuffer(bytes: [0xff, 0xff] + bytes)
        buffer.moveReaderIndex(forwardBy: 2)  // parsing starts at the reader index
        let p = try IPPacket(parsing: buffer)
        XCTAssertEqual(p.headerLength, 60)
        XCTAssertEqual(p.totalLength, 64)
        XCTAssertEqual(p.transportProtocol, 6)
        XCTAssertEqual(p.destination, IPAddress("10.0.0.2"))
        XCTAssertEqual(buffer.readerIndex, 2, "the buffer is not moved")
    }

    func testIPv6() throws {
        let p = try IPPacket(parsing: ByteBuffer(bytes: ipv6(from: v6a, to: v6b, payload: 12, next: 58)))
        XCTAssertEqual(p.version, .v6)
        XCTAssertEqual(p.source, IPAddress("fd00:77::10"))
        XCTAssertEqual(p.destination, IPAddress("2001:db8::7"))
        XCTAssertEqual(p.transportProtocol, 58)
        XCTAssertEqual(p.headerLength, 40)
        XCTAssertEqual(p.totalLength, 52)
    }

    func expect(_ bytes: [UInt8], _ error: IPPacket.ParseError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try IPPacket(parsing: ByteBuffer(bytes: bytes)), file: file, line: line) {
            XCTAssertEqual($0 as? IPPacket.ParseError, error, file: file, line: line)
        }
    }

    func testTruncatedAndImpossible() {
        let good4 = ipv4(from: [1, 2, 3, 4], to: [5, 6, 7, 8])
        let good6 = ipv6(from: v6a, to: v6b)
        expect([], .empty)
        expect([0x45], .truncated(needed: 20, have: 1))
        expect(Array(good4.prefix(19)), .truncated(needed: 20, have: 19))
        expect(Array(good4.prefix(27)), .truncated(needed: 28, have: 27))
        expect([0x44] + good4.dropFirst(), .badLength(16))  // IHL 4: below the minimum header
        expect(Array(ipv4(from: [1, 2, 3, 4], to: [5, 6, 7, 8], payload: 0, ihl: 6).prefix(22)), .truncated(needed: 24, have: 22))
        var short = good4
        short[2] = 0
        short[3] = 19  // total length shorter than the header
        expect(short, .badLength(19))
        expect(Array(good6.prefix(39)), .truncated(needed: 40, have: 39))
        expect(Array(good6.prefix(47)), .truncated(needed: 48, have: 47))
        expect([0x50] + good4.dropFirst(), .unknownVersion(5))
        expect([0x00], .unknownVersion(0))
    }

    func testGarbageNeverCrashes() {
        var generator = SystemRandomNumberGenerator()
        var parsed = 0
        for _ in 0..<20_000 {
            let n = Int.random(in: 0...80, using: &generator)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Steer half of them to a valid version nibble so the length checks are exercised.
            // Steer most of them to a valid version and a small length so the length checks are
            // exercised, not only the version check.
            if n >= 6 && Int.random(in: 0..<4, using: &generator) != 0 {
                if Bool.random(using: &generator) {
                    bytes[0] = 0x40 | UInt8.random(in: 4...7, using: &generator)
                    bytes[2] = 0
                    bytes[3] = UInt8.random(in: 0...90, using: &generator)
                } else {
                    bytes[0] = 0x60
                    bytes[4] = 0
                    bytes[5] = UInt8.random(in: 0...50, using: &generator)
                }
            }
            if let p = try? IPPacket(parsing: ByteBuffer(bytes: bytes)) {
                parsed += 1
                XCTAssertLessThanOrEqual(p.totalLength, n)
                XCTAssertLessThanOrEqual(p.headerLength, p.totalLength)
            }
        }
        XCTAssertGreaterThan(parsed, 0, "some random inputs are well-formed enough to parse")
    }
}
