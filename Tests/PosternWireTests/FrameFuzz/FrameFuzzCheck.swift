import NIOCore
import PosternWire

// The frame codec fuzz check (docs/protocol.md §2-§6), shared by the libFuzzer target (tools/fuzz,
// where this folder is the `FrameFuzz` module through a symlink) and the unit tests (PosternWireTests,
// which replay the seed corpus and every crash ever found): both run this very code. The input is a
// byte stream as it arrives on a tunnel connection. Every property below is one the codec promises;
// a broken one is thrown as a `FrameFuzzViolation` (the fuzz target traps on it):
//
// - `FrameDecoder.next` never traps and throws nothing but `WireError` (§2.3: bad input ends the
//   session with a reason, it never crashes the process);
// - every decoded frame re-encodes (`writeFrame`) to exactly the bytes it was decoded from: the
//   encoding is canonical, so what a peer relays is what it received;
// - the re-encoded bytes decode to an equal frame, consumed exactly;
// - the result does not depend on how the stream is split: fed in small chunks (single bytes among
//   them), the decoder yields the same frames and ends the same way (TCP delivers bytes in any chunks).

/// A promise of the codec the input broke, with the sentence that says which.
public struct FrameFuzzViolation: Error, CustomStringConvertible {
    public var description: String
}

private func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw FrameFuzzViolation(description: message()) }
}

/// Small on purpose: the fuzzer reaches the limit with inputs of its usual size.
let frameFuzzMaxPayload: UInt32 = 64 << 10

/// How decoding a stream ended after its last whole frame.
enum FrameStreamEnding: Equatable {
    /// Needs more bytes; this many are buffered.
    case incomplete(buffered: Int)
    case failed(WireError)
}

/// Checks one input; throws the first promise it finds broken. Returns the frames decoded.
@discardableResult
public func checkFrameStream(_ bytes: [UInt8]) throws -> [Frame] {
    let input = ByteBuffer(bytes: bytes)

    let (frames, ending) = try decodeWhole(input)
    let (chunkedFrames, chunkedEnding) = try decodeInChunks(input)
    try require(chunkedFrames.map(\.frame) == frames.map(\.frame), "chunked decoding yields other frames")
    try require(chunkedEnding == ending, "chunked decoding ends as \(chunkedEnding), whole as \(ending)")

    for (frame, bytes) in frames {
        var encoded = ByteBuffer()
        let written = encoded.writeFrame(frame)
        try require(written == encoded.readableBytes, "writeFrame returned \(written), wrote \(encoded.readableBytes)")
        try require(encoded == bytes, "\(frame.name) re-encodes to other bytes than it was decoded from")

        var decoder = FrameDecoder(maxPayload: frameFuzzMaxPayload)
        let again: Frame?
        do {
            again = try decoder.next(&encoded)
        } catch {
            throw FrameFuzzViolation(description: "re-encoded \(frame.name) does not decode: \(error)")
        }
        try require(again == frame, "re-encoded \(frame.name) decodes to a different frame")
        try require(encoded.readableBytes == 0, "re-encoded \(frame.name) leaves \(encoded.readableBytes) bytes")
        try describe(frame)
    }
    if case .failed(let error) = ending { _ = error.description }
    return frames.map(\.frame)
}

/// Decodes all of `input` at once; returns each frame with the bytes it was decoded from.
func decodeWhole(_ input: ByteBuffer) throws -> ([(frame: Frame, bytes: ByteBuffer)], FrameStreamEnding) {
    var buffer = input
    var decoder = FrameDecoder(maxPayload: frameFuzzMaxPayload)
    var frames: [(frame: Frame, bytes: ByteBuffer)] = []
    while true {
        let before = buffer
        do {
            guard let frame = try decoder.next(&buffer) else { return (frames, .incomplete(buffered: buffer.readableBytes)) }
            let consumed = before.readableBytes - buffer.readableBytes
            try require(consumed >= Frame.headerLength, "a frame consumed only \(consumed) bytes")
            frames.append((frame, before.getSlice(at: before.readerIndex, length: consumed)!))
        } catch let error as WireError {
            return (frames, .failed(error))
        } catch {
            throw FrameFuzzViolation(description: "FrameDecoder threw a non-WireError: \(error)")
        }
    }
}

/// Feeds `input` to the decoder in small chunks, asking for frames after every chunk. The sizes cycle
/// through `frameFuzzChunkSizes`, so every header and payload is split at many offsets, one byte at a time
/// included, without the cost of a call per byte on every input.
func decodeInChunks(_ input: ByteBuffer) throws -> ([(frame: Frame, bytes: ByteBuffer)], FrameStreamEnding) {
    var rest = input
    var buffer = ByteBuffer()
    var decoder = FrameDecoder(maxPayload: frameFuzzMaxPayload)
    var frames: [(frame: Frame, bytes: ByteBuffer)] = []
    var turn = 0
    while rest.readableBytes > 0 {
        var chunk = rest.readSlice(length: min(frameFuzzChunkSizes[turn % frameFuzzChunkSizes.count], rest.readableBytes))!
        turn += 1
        buffer.writeBuffer(&chunk)
        do {
            while let frame = try decoder.next(&buffer) { frames.append((frame, ByteBuffer())) }
        } catch let error as WireError {
            return (frames, .failed(error))
        } catch {
            throw FrameFuzzViolation(description: "FrameDecoder threw a non-WireError: \(error)")
        }
    }
    return (frames, .incomplete(buffered: buffer.readableBytes))
}

let frameFuzzChunkSizes = [1, 1, 5, 2, 1, 6, 3, 1, 17, 4, 1, 64]

/// Formats what logs and `postern ctl` show of a frame, so the formatting code runs on fuzzed values.
func describe(_ frame: Frame) throws {
    var endpoints: [Endpoint] = []
    var addresses: [IPAddress] = []
    switch frame {
    case .open(let m): addresses.append(m.address)
    case .redirect(let m): addresses.append(m.address)
    case .connect(let m): endpoints.append(m.destination)
    case .done(let m): endpoints.append(m.local)
    case .datagram(let m): endpoints.append(m.peer)
    case .accepted(let m): endpoints.append(m.peer)
    case .refused(let m): _ = m.code.description
    case .goAway(let m): _ = m.code.description
    case .failed(let m): _ = m.code.description
    case .reset(let m): _ = m.code.description
    case .environment(let e):
        for i in e.interfaces {
            _ = i.macString
            for a in i.addresses { _ = a.description }
        }
        for r in e.routes {
            _ = r.destination.description
            if let g = r.gateway { addresses.append(g) }
        }
    default: break
    }
    for e in endpoints {
        _ = e.description
        // A formatted endpoint parses back to the same endpoint (`postern ctl` prints what users type).
        if case .ip = e.host {
            try require(Endpoint(parsing: e.description) == e, "endpoint \(e) does not parse back")
        }
    }
    for a in addresses {
        try require(IPAddress(a.description) == a, "address \(a) does not parse back")
    }
}
