import NIOCore
import PosternWire
import XCTest

// Helpers shared by the wire tests: hex literals, encode/decode shortcuts, a seeded RNG.

extension Array where Element == UInt8 {
    /// Bytes from hex text; spaces, newlines and `|`-comments are ignored ("00 01 | header").
    init(hex: String) {
        var out: [UInt8] = []
        for line in hex.split(whereSeparator: \.isNewline) {
            let data = line.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            var digits = data.filter { !$0.isWhitespace }.makeIterator()
            while let hi = digits.next() {
                guard let lo = digits.next(), let byte = UInt8(String([hi, lo]), radix: 16) else {
                    preconditionFailure("bad hex literal near '\(line)'")
                }
                out.append(byte)
            }
        }
        self = out
    }

    var hex: String { map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ") }
}

extension ByteBuffer {
    init(bytes: [UInt8]) {
        self = ByteBufferAllocator().buffer(capacity: bytes.count)
        writeBytes(bytes)
    }

    var readableByteArray: [UInt8] { getBytes(at: readerIndex, length: readableBytes) ?? [] }
}

/// The whole frame as `writeFrame` puts it on the wire.
func encode(_ frame: Frame) -> [UInt8] {
    var buffer = ByteBuffer()
    let written = buffer.writeFrame(frame)
    XCTAssertEqual(written, buffer.readableBytes, "writeFrame must return the bytes it wrote")
    return buffer.readableByteArray
}

/// Every frame in `bytes`, fed all at once; throws the decoder's error.
func decodeAll(_ bytes: [UInt8], maxPayload: UInt32 = FrameDecoder.defaultMaxPayload) throws -> (frames: [Frame], left: Int) {
    var decoder = FrameDecoder(maxPayload: maxPayload)
    var buffer = ByteBuffer(bytes: bytes)
    var frames: [Frame] = []
    while let frame = try decoder.next(&buffer) { frames.append(frame) }
    return (frames, buffer.readableBytes)
}

/// Exactly one frame from exactly these bytes.
func decodeOne(_ bytes: [UInt8], maxPayload: UInt32 = FrameDecoder.defaultMaxPayload) throws -> Frame? {
    let (frames, left) = try decodeAll(bytes, maxPayload: maxPayload)
    XCTAssertLessThanOrEqual(frames.count, 1, "expected at most one frame")
    XCTAssertEqual(left, 0, "decoder left bytes behind")
    return frames.first
}

/// A frame from its type code and raw payload, header built by hand.
func rawFrame(type: UInt8, flags: UInt8 = 0, payload: [UInt8]) -> [UInt8] {
    var b = ByteBuffer()
    b.writeInteger(UInt32(payload.count))
    b.writeInteger(type)
    b.writeInteger(flags)
    b.writeBytes(payload)
    return b.readableByteArray
}

/// Payload of an encoded frame (everything after the 6-byte header).
func payload(of frame: Frame) -> [UInt8] { Array(encode(frame).dropFirst(Frame.headerLength)) }

/// Encodes, decodes with `FrameDecoder`, and checks the result is the same frame and re-encodes to the
/// same bytes.
func assertRoundTrip(
    _ frame: Frame, maxPayload: UInt32 = FrameDecoder.defaultMaxPayload, file: StaticString = #filePath, line: UInt = #line
) {
    let bytes = encode(frame)
    XCTAssertEqual(
        bytes.count, Frame.headerLength + Int(UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3])),
        "length prefix", file: file, line: line)
    XCTAssertEqual(bytes[4], frame.type, "type byte", file: file, line: line)
    XCTAssertEqual(bytes[5], 0, "flags byte", file: file, line: line)
    do {
        let decoded = try decodeOne(bytes, maxPayload: maxPayload)
        XCTAssertEqual(decoded, frame, "round trip of \(frame.name)", file: file, line: line)
        if let decoded { XCTAssertEqual(encode(decoded), bytes, "re-encoding differs", file: file, line: line) }
    } catch {
        XCTFail("\(frame.name) did not decode: \(error)", file: file, line: line)
    }
}

/// Decoding these bytes must throw exactly `expected`.
func assertDecodeThrows(
    _ bytes: [UInt8], _ expected: WireError, _ message: @autoclosure () -> String = "",
    maxPayload: UInt32 = FrameDecoder.defaultMaxPayload, file: StaticString = #filePath, line: UInt = #line
) {
    do {
        let (frames, _) = try decodeAll(bytes, maxPayload: maxPayload)
        XCTFail("expected \(expected), got \(frames.map(\.name)) \(message())", file: file, line: line)
    } catch let error as WireError {
        XCTAssertEqual(error, expected, message(), file: file, line: line)
    } catch {
        XCTFail("expected \(expected), got non-wire error \(error) \(message())", file: file, line: line)
    }
}

/// SplitMix64: small, fast and the same sequence on every platform, so fuzz failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func ipv4(_ text: String) -> IPAddress { IPAddress(text)! }
func ipv6(_ text: String) -> IPAddress { IPAddress(text)! }
func endpoint(_ text: String) -> Endpoint { Endpoint(parsing: text)! }

func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
