import NIOCore
import PosternWire
import XCTest

/// Strings, addresses, hosts and endpoints as fields (docs/protocol.md §2.2).
final class FieldEncodingTests: XCTestCase {
    func written(_ write: (inout ByteBuffer) -> Int) -> [UInt8] {
        var b = ByteBuffer()
        let n = write(&b)
        XCTAssertEqual(n, b.readableBytes, "returned count")
        return b.readableByteArray
    }

    // MARK: strings

    func testStringEncoding() {
        XCTAssertEqual(written { $0.writeWireString("") }, [0, 0])
        XCTAssertEqual(written { $0.writeWireString("acme") }, [0, 4, 0x61, 0x63, 0x6d, 0x65])
        XCTAssertEqual(written { $0.writeWireString("é") }, [0, 2, 0xc3, 0xa9], "length counts UTF-8 bytes, not characters")
        XCTAssertEqual(written { $0.writeWireString("a\u{0}b") }, [0, 3, 0x61, 0, 0x62], "NUL is an ordinary byte")
        let longest = written { $0.writeWireString(String(repeating: "m", count: 65535)) }
        XCTAssertEqual(Array(longest.prefix(2)), [0xff, 0xff])
        XCTAssertEqual(longest.count, 65537)
    }

    /// Longer strings are cut to 65535 bytes, at a character boundary so the rest stays valid UTF-8.
    /// (Only a little longer here: the encoder's cut drops one character at a time.)
    func testOverlongStringsAreCutAtACharacter() throws {
        var ascii = ByteBuffer()
        ascii.writeWireString(String(repeating: "a", count: 65535 + 10))
        XCTAssertEqual(try ascii.readWireString(), String(repeating: "a", count: 65535))

        var accented = ByteBuffer()
        accented.writeWireString(String(repeating: "é", count: 32768 + 3))  // 65,542 bytes
        XCTAssertEqual(try accented.readWireString(), String(repeating: "é", count: 32767))
        XCTAssertEqual(accented.readableBytes, 0)
    }

    func testStringReadNeedsAllItsBytes() throws {
        var b = ByteBuffer(bytes: [0, 3, 0x61, 0x62])
        XCTAssertNil(try b.readWireString())
        XCTAssertEqual(b.readerIndex, 0, "a short read consumes nothing")
        b = ByteBuffer(bytes: [0])
        XCTAssertNil(try b.readWireString())
    }

    /// Strings must be valid UTF-8, so what a peer sends is exactly what is shown and logged.
    func testInvalidUTF8StringsAreRejected() {
        let invalid: [[UInt8]] = [
            [0xff], [0xc3], [0x61, 0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80],
            // A 4-byte sequence missing its last byte: decoded leniently it becomes one U+FFFD, which is
            // also 3 bytes, so a length comparison alone does not notice.
            [0xf0, 0x90, 0x80], [0xf0, 0x9f, 0x98, 0x41], [0x41, 0xf4, 0x8f, 0xbf],
        ]
        for bytes in invalid {
            var b = ByteBuffer(bytes: [0, UInt8(bytes.count)] + bytes)
            XCTAssertThrowsError(try b.readWireString(), bytes.hex) { error in
                XCTAssertEqual(error as? WireError, .invalidValue(field: "string", value: "not valid UTF-8"))
            }
            assertDecodeThrows(
                rawFrame(type: 0x09, payload: [0, 1, 0, UInt8(bytes.count)] + bytes),
                .invalidValue(field: "string", value: "not valid UTF-8"),
                "GOAWAY \(bytes.hex)")
        }
        // U+FFFD sent as such is valid and stays itself.
        var b = ByteBuffer(bytes: [0, 4, 0xef, 0xbf, 0xbd, 0x41])
        XCTAssertEqual(try b.readWireString(), "\u{FFFD}A")
    }

    /// Strings keep their exact bytes: no Unicode normalization on the way through.
    func testStringsAreNotNormalized() throws {
        let decomposed = "e\u{301}"  // e + combining acute; == "é" for Swift, not the same bytes
        let frame = Frame.goAway(.init(code: .protocolError, message: decomposed))
        XCTAssertEqual(Array(encode(frame).suffix(3)), [0x65, 0xcc, 0x81])
        let decoded = try decodeOne(encode(frame))
        guard case .goAway(let g) = decoded else { return XCTFail("\(String(describing: decoded))") }
        XCTAssertEqual(Array(g.message.utf8), [0x65, 0xcc, 0x81])
    }

    // MARK: addresses, hosts, endpoints

    func testAddressEncoding() {
        XCTAssertEqual(written { $0.writeAddress(ipv4("192.168.77.10")) }, [1, 192, 168, 77, 10])
        XCTAssertEqual(written { $0.writeAddress(.anyV4) }, [1, 0, 0, 0, 0])
        XCTAssertEqual(written { $0.writeAddress(ipv6("fd00::10")) }, [4, 0xfd] + [UInt8](repeating: 0, count: 14) + [0x10])
        XCTAssertEqual(written { $0.writeAddress(.anyV6) }, [4] + [UInt8](repeating: 0, count: 16))
    }

    func testHostAndEndpointEncoding() {
        XCTAssertEqual(written { $0.writeHost(.name("lan")) }, [3, 3, 0x6c, 0x61, 0x6e])
        XCTAssertEqual(written { $0.writeHost(.ip(ipv4("10.0.0.1"))) }, [1, 10, 0, 0, 1])
        XCTAssertEqual(written { $0.writeEndpoint(endpoint("10.0.0.1:443")) }, [1, 10, 0, 0, 1, 0x01, 0xbb])
        XCTAssertEqual(written { $0.writeEndpoint(endpoint("[::1]:80")) }, [4] + [UInt8](repeating: 0, count: 15) + [1, 0, 80])
        XCTAssertEqual(written { $0.writeEndpoint(endpoint("intranet.lan:8080")) }, [3, 12] + Array("intranet.lan".utf8) + [0x1f, 0x90])
    }

    /// Names are at most 255 bytes (a one-byte length); longer ones are cut.
    func testLongNamesAreCutTo255Bytes() throws {
        var b = ByteBuffer()
        b.writeHost(.name(String(repeating: "a", count: 300)))
        XCTAssertEqual(b.readableBytes, 2 + 255)
        XCTAssertEqual(try b.readHost(), .name(String(repeating: "a", count: 255)))
    }

    /// A cut inside a multi-byte character would send invalid UTF-8, which the peer rejects as a
    /// protocol error and ends the whole session; the cut must fall on a character boundary.
    func testLongNamesAreCutAtACharacter() throws {
        let name = String(repeating: "a", count: 254) + "é" + "b"
        let frame = Frame.connect(.init(requestID: 1, portID: 0, destination: Endpoint(host: .name(name), port: 80)))
        let decoded = try decodeOne(encode(frame))
        XCTAssertEqual(
            decoded,
            .connect(.init(requestID: 1, portID: 0, destination: Endpoint(host: .name(String(repeating: "a", count: 254)), port: 80))))
    }

    func testReadHost() throws {
        var b = ByteBuffer(bytes: [3, 1, 0x78])
        XCTAssertEqual(try b.readHost(), .name("x"))
        b = ByteBuffer(bytes: [3, 1, 0x78])
        XCTAssertThrowsError(try b.readHost(allowName: false)) {
            XCTAssertEqual($0 as? WireError, .invalidValue(field: "address type", value: "name not allowed here"))
        }
        b = ByteBuffer(bytes: [3, 0])
        XCTAssertThrowsError(try b.readHost()) { XCTAssertEqual($0 as? WireError, .invalidValue(field: "host name", value: "empty")) }
        b = ByteBuffer(bytes: [2, 0, 0, 0, 0])
        XCTAssertThrowsError(try b.readHost()) { XCTAssertEqual($0 as? WireError, .invalidValue(field: "address type", value: "2")) }
        for short: [UInt8] in [[], [1, 1, 2, 3], [4] + [UInt8](repeating: 0, count: 15), [3], [3, 2, 0x61]] {
            b = ByteBuffer(bytes: short)
            XCTAssertNil(try b.readHost(), short.hex)
            XCTAssertEqual(b.readerIndex, 0, "a short read consumes nothing")
        }
    }

    func testReadEndpointRestoresOnShortRead() throws {
        var b = ByteBuffer(bytes: [1, 10, 0, 0, 1, 0])
        XCTAssertNil(try b.readEndpoint())
        XCTAssertEqual(b.readerIndex, 0)
        b = ByteBuffer(bytes: [1, 10, 0, 0, 1, 0, 80, 0xaa])
        XCTAssertEqual(try b.readEndpoint(), endpoint("10.0.0.1:80"))
        XCTAssertEqual(b.readableBytes, 1)
        b = ByteBuffer(bytes: [3, 1, 0x78, 0, 80])
        XCTAssertThrowsError(try b.readEndpoint(allowName: false))
        b = ByteBuffer(bytes: [3, 1, 0x78, 0, 80])
        XCTAssertEqual(try b.readEndpoint(), Endpoint(host: .name("x"), port: 80))
        b = ByteBuffer(bytes: [4] + [UInt8](repeating: 0, count: 16) + [0, 0])
        XCTAssertEqual(try b.readAddress(), .anyV6)
        XCTAssertEqual(b.readableBytes, 2)
    }
}
