import NIOCore
import PosternWire
import XCTest

/// The UDP channel's cleartext header and sealed messages (docs/protocol.md §9.2, §9.3): exact layout,
/// round trips, and a typed error for every truncation, oversize, unknown kind or type and bad value.
final class UDPChannelMessageTests: XCTestCase {
    private static let messages: [UDPChannelMessage] = [
        .ping(timestamp: 1_000_000_000, receiving: false),
        .ping(timestamp: .max, receiving: true),
        .pong(echo: 0x0102_0304_0506_0708),
        .datagram(portID: 3, peer: endpoint("192.168.77.53:53"), bytes: buffer([0xde, 0xad, 0xbe, 0xef])),
        .datagram(portID: .max, peer: endpoint("[fd00::10]:65535"), bytes: buffer([])),
        .packet(buffer([0x45, 0, 0, 20])),
        .packet(buffer([])),
    ]

    private func encoded(_ m: UDPChannelMessage) -> [UInt8] {
        var b = ByteBuffer()
        let n = b.writeUDPChannelMessage(m)
        XCTAssertEqual(n, b.readableBytes, "writeUDPChannelMessage returns what it wrote")
        XCTAssertEqual(n, m.encodedLength, "encodedLength of \(m.name)")
        return b.readableByteArray
    }

    private func decode(_ bytes: [UInt8]) throws -> UDPChannelMessage {
        var b = buffer(bytes)
        return try b.readUDPChannelMessage()
    }

    private func assertError(_ expected: UDPChannelError, _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(bytes), file: file, line: line) { error in
            XCTAssertEqual(error as? UDPChannelError, expected, file: file, line: line)
        }
    }

    func testHeaderLayoutAndNonce() throws {
        let h = UDPChannelHeader(channelID: 0x0102, sessionID: 0x0123_4567_89ab_cdef, counter: 0x1122_3344_5566_7788)
        var b = ByteBuffer()
        XCTAssertEqual(b.writeUDPChannelHeader(h), UDPChannelHeader.length)
        XCTAssertEqual(
            b.readableByteArray.hex,
            [UInt8](hex: "01 00 01 02 01 23 45 67 89 ab cd ef 11 22 33 44 55 66 77 88").hex)
        XCTAssertEqual(h.nonce.hex, [UInt8](hex: "00 00 01 02 11 22 33 44 55 66 77 88").hex)
        XCTAssertEqual(h.nonce.count, UDPChannelHeader.nonceLength)
        b.writeBytes(Array(repeating: 0, count: UDPChannelHeader.tagLength + 1))
        XCTAssertEqual(try b.readUDPChannelHeader(), h)
        XCTAssertEqual(b.readableBytes, UDPChannelHeader.tagLength + 1, "the header is consumed, the rest is not")
    }

    func testHeaderErrorsInOrder() {
        func read(_ bytes: [UInt8]) throws -> UDPChannelHeader {
            var b = buffer(bytes)
            return try b.readUDPChannelHeader()
        }
        func expect(_ e: UDPChannelError, _ bytes: [UInt8], line: UInt = #line) {
            XCTAssertThrowsError(try read(bytes), line: line) { XCTAssertEqual($0 as? UDPChannelError, e, line: line) }
        }
        let valid = [UInt8](hex: "01 00 00 00 01 23 45 67 89 ab cd ef 00 00 00 00 00 00 00 00") + Array(repeating: 0, count: 17)
        XCTAssertNoThrow(try read(valid))
        for n in 0..<valid.count { expect(.truncated(what: "datagram"), Array(valid.prefix(n))) }
        let huge = valid + Array(repeating: 0, count: UDPChannelHeader.maxDatagramSize - valid.count)
        XCTAssertNoThrow(try read(huge), "the largest datagram is accepted")
        expect(.tooLarge(size: huge.count + 1, limit: 65_507), huge + [0])
        // Size comes before the kind, the kind before the reserved byte.
        expect(.tooLarge(size: 70_000, limit: 65_507), Array(repeating: 0xff, count: 70_000))
        expect(.truncated(what: "datagram"), [0xff])
        for kind in 0...255 where kind != 1 {
            var bytes = valid
            bytes[0] = UInt8(kind)
            bytes[1] = 9
            expect(.unknownKind(UInt8(kind)), bytes)
        }
        var reserved = valid
        reserved[1] = 0x80
        expect(.invalidValue(field: "reserved byte", value: "128"), reserved)
    }

    func testMessageLayouts() {
        XCTAssertEqual(encoded(.ping(timestamp: 1_000_000_000, receiving: true)).hex, [UInt8](hex: "01 00 00 00 00 3b 9a ca 00 01").hex)
        XCTAssertEqual(encoded(.pong(echo: 1_000_000_000)).hex, [UInt8](hex: "02 00 00 00 00 3b 9a ca 00").hex)
        XCTAssertEqual(
            encoded(.datagram(portID: 3, peer: endpoint("192.168.77.53:53"), bytes: buffer([0xde, 0xad, 0xbe, 0xef]))).hex,
            [UInt8](hex: "03 00 00 00 03 01 c0 a8 4d 35 00 35 de ad be ef").hex, "the fields of DATAGRAM (§6.2)")
        XCTAssertEqual(encoded(.packet(buffer([0x45, 0x00]))).hex, [UInt8](hex: "04 45 00").hex)
    }

    func testEveryMessageRoundTrips() throws {
        for m in Self.messages {
            XCTAssertEqual(try decode(encoded(m)), m, m.name)
        }
    }

    func testEveryTruncationIsTyped() {
        assertError(.truncated(what: "message"), [])
        for m in Self.messages {
            let bytes = encoded(m)
            // DATAGRAM and PACKET end with data: a cut inside the data is a shorter valid message.
            let fixed: Int
            switch m {
            case .datagram(_, let peer, _): fixed = UDPChannelMessage.datagramPrefixLength(for: peer)
            case .packet: fixed = 1
            default: fixed = bytes.count
            }
            for n in 1..<fixed { assertError(.truncated(what: m.name), Array(bytes.prefix(n))) }
        }
    }

    func testTrailingBytesUnknownTypesAndBadValues() {
        assertError(.trailingBytes(message: "PING", count: 1), encoded(.ping(timestamp: 1, receiving: false)) + [0])
        assertError(.trailingBytes(message: "PONG", count: 3), encoded(.pong(echo: 1)) + [1, 2, 3])
        for type in 0...255 where !(1...4).contains(type) {
            assertError(.unknownMessageType(UInt8(type)), [UInt8(type), 0, 0, 0, 0, 0, 0, 0, 0, 0])
        }
        assertError(.invalidValue(field: "receiving", value: "2"), [UInt8](hex: "01 00 00 00 00 00 00 00 01 02"))
        assertError(
            .invalidValue(field: "address type", value: "name not allowed here"),
            [UInt8](hex: "03 00 00 00 01 03 01 61 00 35"))
        assertError(.invalidValue(field: "address type", value: "2"), [UInt8](hex: "03 00 00 00 01 02 00 00"))
    }

    /// The largest DATAGRAM fills exactly one UDP datagram of the channel's limit.
    func testSizes() {
        let v4 = endpoint("10.0.0.1:53")
        let v6 = endpoint("[fd00::1]:53")
        XCTAssertEqual(UDPChannelMessage.maxDatagramBytes(for: v4), 65_459)
        XCTAssertEqual(UDPChannelMessage.maxDatagramBytes(for: v6), 65_447)
        for peer in [v4, v6] {
            let largest = UDPChannelMessage.datagram(
                portID: 1, peer: peer, bytes: buffer(Array(repeating: 7, count: UDPChannelMessage.maxDatagramBytes(for: peer))))
            XCTAssertEqual(UDPChannelHeader.overhead + largest.encodedLength, UDPChannelHeader.maxDatagramSize)
        }
    }

    /// 20,000 random inputs, and 20,000 valid messages with random bytes changed: every one either
    /// throws a `UDPChannelError` or decodes to a message that re-encodes to the very same bytes.
    func testRandomInputsNeverCrash() throws {
        var rng = SeededGenerator(seed: 9)
        var decoded = 0
        for i in 0..<40_000 {
            var bytes: [UInt8]
            if i < 20_000 {
                bytes = (0..<Int.random(in: 0...48, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if i % 2 == 0, !bytes.isEmpty { bytes[0] = UInt8.random(in: 1...5, using: &rng) }
            } else {
                bytes = encoded(Self.messages[i % Self.messages.count])
                for _ in 0..<Int.random(in: 1...3, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            do {
                let m = try decode(bytes)
                XCTAssertEqual(encoded(m), bytes, "input \(i) does not re-encode to its bytes")
                decoded += 1
            } catch is UDPChannelError {
            } catch {
                XCTFail("input \(i): untyped error \(error)")
            }
            var datagram = buffer(bytes)
            do { _ = try datagram.readUDPChannelHeader() } catch is UDPChannelError {} catch { XCTFail("header \(i): \(error)") }
        }
        XCTAssertGreaterThan(decoded, 1_000, "the random inputs should include valid messages too")
    }
}
