import NIOCore
import PosternWire
import XCTest

/// `FrameDecoder` on its own (docs/protocol.md §2): split points, limits, header checks, garbage.
/// The NIO `ByteToMessageDecoderVerifier` idea without a channel: the same frames must come out
/// however the bytes are cut.
final class FrameDecoderTests: XCTestCase {
    /// The §8 vectors plus frames with big, empty and awkward payloads.
    var stream: (bytes: [UInt8], frames: [Frame]) {
        var frames = GoldenVectors.all.map(\.frame)
        frames += [
            .data(.init(portID: 9, bytes: buffer([UInt8](repeating: 0x5a, count: 70_000)))),
            .data(.init(portID: 9, bytes: ByteBuffer())),
            .refused(.init(code: .unknown(4242), message: "")),
            .environment(.init(hostname: "", softwareVersion: "")),
            .connect(.init(requestID: 1, portID: 0, destination: Endpoint(host: .name(String(repeating: "z", count: 255)), port: 1))),
        ]
        return (frames.flatMap(encode), frames)
    }

    func testAllAtOnce() throws {
        let (bytes, frames) = stream
        let (decoded, left) = try decodeAll(bytes)
        XCTAssertEqual(decoded, frames)
        XCTAssertEqual(left, 0)
    }

    func testOneByteAtATime() throws {
        let (bytes, frames) = stream
        var decoder = FrameDecoder()
        var buffer = ByteBuffer()
        var decoded: [Frame] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            while let frame = try decoder.next(&buffer) { decoded.append(frame) }
        }
        XCTAssertEqual(decoded, frames)
        XCTAssertEqual(buffer.readableBytes, 0)
    }

    func testRandomChunks() throws {
        let (bytes, frames) = stream
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<50 {
            var decoder = FrameDecoder()
            var buffer = ByteBuffer()
            var decoded: [Frame] = []
            var i = 0
            while i < bytes.count {
                let n = min(bytes.count - i, Int.random(in: 1...(Bool.random(using: &rng) ? 8 : 5000), using: &rng))
                buffer.writeBytes(bytes[i..<i + n])
                i += n
                while let frame = try decoder.next(&buffer) { decoded.append(frame) }
                // Compact now and then, as ByteToMessageHandler does.
                if Bool.random(using: &rng) { buffer.discardReadBytes() }
            }
            XCTAssertEqual(decoded, frames)
        }
    }

    /// Only whole frames are consumed: a partial frame stays in the buffer untouched.
    func testConsumesOnlyWholeFrames() throws {
        let first = GoldenVectors.all[6].bytes  // PING
        let second = GoldenVectors.all[0].bytes  // HELLO
        for cut in 0..<second.count {
            var decoder = FrameDecoder()
            var buffer = ByteBuffer(bytes: first + second.prefix(cut))
            XCTAssertEqual(try decoder.next(&buffer), GoldenVectors.all[6].frame)
            XCTAssertNil(try decoder.next(&buffer))
            XCTAssertEqual(buffer.readableByteArray, Array(second.prefix(cut)))
        }
    }

    /// Every proper prefix of every vector means "need more", never an error or a wrong frame.
    func testEveryPrefixNeedsMore() throws {
        for v in GoldenVectors.all {
            let bytes = v.bytes
            for length in 0..<bytes.count {
                var decoder = FrameDecoder()
                var buffer = ByteBuffer(bytes: Array(bytes.prefix(length)))
                XCTAssertNil(try decoder.next(&buffer), "§\(v.section) cut at \(length)")
                XCTAssertEqual(buffer.readableBytes, length, "nothing consumed")
            }
        }
    }

    func testEmptyBufferNeedsMore() throws {
        var decoder = FrameDecoder()
        var buffer = ByteBuffer()
        XCTAssertNil(try decoder.next(&buffer))
    }

    // MARK: - Header checks (§2.1, §2.3)

    func testLengthOverTheLimitThrowsBeforeThePayload() {
        let limit = FrameDecoder.defaultMaxPayload
        for length in [limit + 1, limit + 1000, UInt32.max] {
            // Only the header has arrived.
            assertDecodeThrows(rawFrame(type: 0x20, payload: []).withLength(length), .frameTooLarge(length: length, limit: limit))
        }
        assertDecodeThrows(rawFrame(type: 0x20, payload: []).withLength(17), .frameTooLarge(length: 17, limit: 16), maxPayload: 16)
        // At the limit the decoder waits for the payload.
        XCTAssertEqual(try decodeAll(rawFrame(type: 0x20, payload: []).withLength(limit)).frames, [])
        XCTAssertEqual(try decodeAll(rawFrame(type: 0x20, payload: []).withLength(16), maxPayload: 16).frames, [])
    }

    /// Length is checked first, then flags, then type (§2.3).
    func testHeaderCheckOrder() {
        assertDecodeThrows(
            rawFrame(type: 0xee, flags: 1, payload: []).withLength(.max),
            .frameTooLarge(length: .max, limit: FrameDecoder.defaultMaxPayload))
        assertDecodeThrows(rawFrame(type: 0xee, flags: 1, payload: []), .nonZeroFlags(type: 0xee, flags: 1))
        assertDecodeThrows(rawFrame(type: 0xee, payload: []), .unknownType(0xee))
    }

    func testUnknownTypesThrowAsSoonAsTheHeaderArrives() {
        let unknown = (UInt8(0)...255).filter { !Frame.knownTypes.contains($0) }
        XCTAssertEqual(unknown.count, 256 - 30)
        for t in unknown {
            assertDecodeThrows(rawFrame(type: t, payload: []).withLength(100), .unknownType(t))
            assertDecodeThrows(rawFrame(type: t, payload: []), .unknownType(t))
            XCTAssertEqual(Frame.name(of: t), "0x" + String(t, radix: 16))
        }
    }

    func testKnownTypesAndNames() {
        let expected: [UInt8: String] = [
            0x01: "HELLO", 0x02: "CHALLENGE", 0x03: "AUTHENTICATE", 0x04: "WELCOME", 0x05: "REFUSED", 0x06: "ENVIRONMENT",
            0x07: "PING", 0x08: "PONG", 0x09: "GOAWAY", 0x10: "OPEN", 0x11: "REDIRECT", 0x12: "CONNECT", 0x13: "LISTEN",
            0x14: "CLOSE", 0x18: "DONE", 0x19: "FAILED", 0x20: "DATA", 0x21: "DATAGRAM", 0x22: "WINDOW", 0x23: "ACCEPTED",
            0x24: "FINISHED", 0x25: "RESET", 0x15: "TUN", 0x1a: "TUN_READY", 0x26: "PACKET", 0x17: "ECHO", 0x1f: "ECHO_REPLY",
            0x29: "TUN_STATS", 0x2a: "TUN_CLOSE", 0x2b: "DENIED",
        ]
        XCTAssertEqual(Frame.knownTypes, Set(expected.keys))
        for (t, name) in expected { XCTAssertEqual(Frame.name(of: t), name) }
        for v in GoldenVectors.all { XCTAssertEqual(v.frame.name, expected[v.frame.type]) }
        XCTAssertEqual(Frame.headerLength, 6)
    }

    func testNonZeroFlagsThrow() {
        for flags in UInt8(1)...255 {
            assertDecodeThrows(rawFrame(type: 0x07, flags: flags, payload: []).withLength(8), .nonZeroFlags(type: 0x07, flags: flags))
        }
        for v in GoldenVectors.all {
            var bytes = v.bytes
            bytes[5] = 0x80
            assertDecodeThrows(bytes, .nonZeroFlags(type: v.frame.type, flags: 0x80))
        }
    }

    // MARK: - Payload checks, on every vector

    /// Variable-length tails: the data of DATA and DATAGRAM (and PACKET's packet) takes whatever the
    /// length leaves.
    func isOpenEnded(_ frame: Frame) -> Bool {
        switch frame {
        case .data, .datagram, .packet: return true
        default: return false
        }
    }

    func testTrailingBytesThrow() {
        for v in GoldenVectors.all where !isOpenEnded(v.frame) {
            for extra in [1, 3] {
                let p = Array(v.bytes.dropFirst(6)) + [UInt8](repeating: 0xee, count: extra)
                switch v.frame {
                case .tun(let t) where t.flags == nil:
                    // The flags byte is TUN's optional tail (docs/protocol.md §10.1): one byte more is a
                    // TUN with flags, only what follows it is trailing.
                    if extra == 1 {
                        XCTAssertEqual(
                            try decodeOne(rawFrame(type: v.frame.type, payload: p)),
                            .tun(.init(requestID: t.requestID, mtu: t.mtu, flags: .init(rawValue: 0xee))))
                    } else {
                        assertDecodeThrows(rawFrame(type: v.frame.type, payload: p), .trailingBytes(frame: v.frame.name, count: extra - 1))
                    }
                case .open(let o) where o.flags == nil:
                    // The flags byte is OPEN's optional tail (§5.1), as TUN's.
                    if extra == 1 {
                        var flagged = o
                        flagged.flags = .init(rawValue: 0xee)
                        XCTAssertEqual(try decodeOne(rawFrame(type: v.frame.type, payload: p)), .open(flagged))
                    } else {
                        assertDecodeThrows(rawFrame(type: v.frame.type, payload: p), .trailingBytes(frame: v.frame.name, count: extra - 1))
                    }
                case .tunReady(let r) where r.secondAddress == nil:
                    // The second address is TUN_READY's optional tail: bytes there are read as one,
                    // and 0xee is no address type.
                    assertDecodeThrows(rawFrame(type: v.frame.type, payload: p), .invalidValue(field: "address type", value: "238"))
                case .tunStats(let t) where t.device == nil:
                    // The device's offloads are TUN_STATS's optional tail (§10.5): bytes there are read
                    // as it, and 0xee is no "offloads asked" flag.
                    assertDecodeThrows(rawFrame(type: v.frame.type, payload: p), .invalidValue(field: "offloads asked", value: "238"))
                default:
                    assertDecodeThrows(rawFrame(type: v.frame.type, payload: p), .trailingBytes(frame: v.frame.name, count: extra))
                }
            }
        }
    }

    /// A length that ends inside a field: `truncated`, whatever the field (for DATA and DATAGRAM only
    /// while the fixed part is cut; after it the frame is valid with fewer data bytes).
    func testShortPayloadsThrowTruncated() throws {
        for v in GoldenVectors.all {
            let p = Array(v.bytes.dropFirst(6))
            for length in 0..<p.count {
                let bytes = rawFrame(type: v.frame.type, payload: Array(p.prefix(length)))
                do {
                    let frame = try decodeOne(bytes)
                    switch (frame, v.frame) {
                    case (.data(let got)?, .data(let full)):
                        XCTAssertGreaterThanOrEqual(length, 4)
                        XCTAssertEqual(got.bytes, full.bytes.getSlice(at: full.bytes.readerIndex, length: length - 4))
                    case (.datagram(let got)?, .datagram(let full)):
                        XCTAssertEqual(got.peer, full.peer)
                        XCTAssertEqual(got.bytes.readableBytes, length - (p.count - full.bytes.readableBytes))
                    case (.packet(let got)?, .packet(let full)):
                        // A PACKET is all data: any cut is a (shorter) packet, which the policy judges.
                        XCTAssertEqual(got.bytes, full.bytes.getSlice(at: full.bytes.readerIndex, length: length))
                    case (.tun(let got)?, .tun(let full)):
                        // Cut right before its optional flags byte: the original TUN (§10.1).
                        XCTAssertEqual(length, p.count - 1)
                        XCTAssertEqual(got, .init(requestID: full.requestID, mtu: full.mtu))
                    case (.open(let got)?, .open(let full)):
                        // Cut right before its optional flags byte: the original OPEN (§5.1).
                        XCTAssertEqual(length, p.count - 1)
                        XCTAssertNotNil(full.flags)
                        XCTAssertNil(got.flags)
                    case (.tunReady(let got)?, .tunReady(let full)):
                        // Cut right before its optional second address: the original TUN_READY (§10.1).
                        XCTAssertEqual(length, p.count - 18, "an IPv6 prefix is 18 bytes")
                        XCTAssertNotNil(full.secondAddress)
                        XCTAssertNil(got.secondAddress)
                        XCTAssertEqual(got.prefixes, full.prefixes)
                    case (.tunStats(let got)?, .tunStats(let full)):
                        // Cut right before its optional device part: TUN_STATS without it (§10.5).
                        XCTAssertEqual(length, p.count - Frame.TunStats.Device.length)
                        XCTAssertNotNil(full.device)
                        XCTAssertNil(got.device)
                        XCTAssertEqual(
                            got,
                            Frame.TunStats(toLAN: full.toLAN, fromLAN: full.fromLAN, errorsSent: full.errorsSent, dropped: full.dropped))
                    default:
                        XCTFail("§\(v.section) cut at \(length) decoded as \(String(describing: frame))")
                    }
                } catch let error as WireError {
                    XCTAssertEqual(error, .truncated(frame: v.frame.name), "§\(v.section) cut at \(length)")
                }
            }
        }
    }

    // MARK: - Garbage

    /// 20,000 seeded random inputs: some pure noise, some well-formed headers over random payloads,
    /// some mutated vectors. The decoder may throw a WireError; it must never trap, and whatever it
    /// does decode re-encodes to exactly the bytes it consumed (the encoding is canonical).
    func testRandomInputNeverCrashes() {
        var rng = SeededGenerator(seed: 0x5057_4952_4546_555a)
        let types = Array(Frame.knownTypes)
        let vectors = GoldenVectors.all.map(\.bytes)
        var decodedFrames = 0
        var errors = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            switch round % 4 {
            case 0:
                bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1, 2:
                let payload = (0..<Int.random(in: 0...48, using: &rng)).map { _ in
                    // Small values hit counts, flags and address types more often than uniform bytes would.
                    Bool.random(using: &rng) ? UInt8.random(in: 0...4, using: &rng) : UInt8.random(in: 0...255, using: &rng)
                }
                bytes = rawFrame(type: types.randomElement(using: &rng)!, payload: payload)
            default:
                bytes = vectors.randomElement(using: &rng)!
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    if i < 4 && Bool.random(using: &rng) { continue }  // keep most lengths plausible
                    bytes[i] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            var decoder = FrameDecoder()
            var buffer = ByteBuffer(bytes: bytes)
            do {
                while true {
                    let start = buffer.readerIndex
                    guard let frame = try decoder.next(&buffer) else { break }
                    decodedFrames += 1
                    let consumed = Array(bytes[start..<buffer.readerIndex])
                    XCTAssertEqual(encode(frame), consumed, "round \(round): \(bytes.hex)")
                }
            } catch is WireError {
                errors += 1
            } catch {
                XCTFail("round \(round): non-wire error \(error)")
            }
        }
        // The mix must actually reach the payload decoders both ways.
        XCTAssertGreaterThan(decodedFrames, 1000)
        XCTAssertGreaterThan(errors, 1000)
    }
}

extension Array where Element == UInt8 {
    /// The same bytes with the length prefix replaced.
    func withLength(_ length: UInt32) -> [UInt8] {
        var b = self
        b[0] = UInt8(length >> 24)
        b[1] = UInt8(length >> 16 & 0xff)
        b[2] = UInt8(length >> 8 & 0xff)
        b[3] = UInt8(length & 0xff)
        return b
    }
}
