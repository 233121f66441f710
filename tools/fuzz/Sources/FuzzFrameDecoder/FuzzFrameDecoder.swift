import NIOCore
import PosternWire

// libFuzzer target for the frame codec (docs/protocol.md §2-§6). The input is a byte stream as it
// arrives on a tunnel connection. Every property below is one the codec promises; a trap is a bug:
//
// - `FrameDecoder.next` never traps and throws nothing but `WireError` (§2.3: bad input ends the
//   session with a reason, it never crashes the process);
// - every decoded frame re-encodes (`writeFrame`) to exactly the bytes it was decoded from: the
//   encoding is canonical, so what a peer relays is what it received;
// - the re-encoded bytes decode to an equal frame, consumed exactly;
// - the result does not depend on how the stream is split: fed in small chunks (single bytes among
//   them), the decoder yields the same frames and ends the same way (TCP delivers bytes in any chunks).

/// Small on purpose: the fuzzer reaches the limit with inputs of its usual size.
let maxPayload: UInt32 = 64 << 10

/// How decoding a stream ended after its last whole frame.
enum Ending: Equatable {
    /// Needs more bytes; this many are buffered.
    case incomplete(buffered: Int)
    case failed(WireError)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = ByteBuffer(bytes: UnsafeRawBufferPointer(start: start, count: count))

    let (frames, ending) = decodeWhole(input)
    let (chunkedFrames, chunkedEnding) = decodeInChunks(input)
    precondition(chunkedFrames.map(\.frame) == frames.map(\.frame), "chunked decoding yields other frames")
    precondition(chunkedEnding == ending, "chunked decoding ends as \(chunkedEnding), whole as \(ending)")

    for (frame, bytes) in frames {
        var encoded = ByteBuffer()
        let written = encoded.writeFrame(frame)
        precondition(written == encoded.readableBytes, "writeFrame returned \(written), wrote \(encoded.readableBytes)")
        precondition(encoded == bytes, "\(frame.name) re-encodes to other bytes than it was decoded from")

        var decoder = FrameDecoder(maxPayload: maxPayload)
        let again: Frame?
        do {
            again = try decoder.next(&encoded)
        } catch {
            preconditionFailure("re-encoded \(frame.name) does not decode: \(error)")
        }
        precondition(again == frame, "re-encoded \(frame.name) decodes to a different frame")
        precondition(encoded.readableBytes == 0, "re-encoded \(frame.name) leaves \(encoded.readableBytes) bytes")
        describe(frame)
    }
    if case .failed(let error) = ending { _ = error.description }
    return 0
}

/// Decodes all of `input` at once; returns each frame with the bytes it was decoded from.
func decodeWhole(_ input: ByteBuffer) -> ([(frame: Frame, bytes: ByteBuffer)], Ending) {
    var buffer = input
    var decoder = FrameDecoder(maxPayload: maxPayload)
    var frames: [(frame: Frame, bytes: ByteBuffer)] = []
    while true {
        let before = buffer
        do {
            guard let frame = try decoder.next(&buffer) else { return (frames, .incomplete(buffered: buffer.readableBytes)) }
            let consumed = before.readableBytes - buffer.readableBytes
            precondition(consumed >= Frame.headerLength, "a frame consumed only \(consumed) bytes")
            frames.append((frame, before.getSlice(at: before.readerIndex, length: consumed)!))
        } catch let error as WireError {
            return (frames, .failed(error))
        } catch {
            preconditionFailure("FrameDecoder threw a non-WireError: \(error)")
        }
    }
}

/// Feeds `input` to the decoder in small chunks, asking for frames after every chunk. The sizes cycle
/// through `chunkSizes`, so every header and payload is split at many offsets, one byte at a time
/// included, without the cost of a call per byte on every input.
func decodeInChunks(_ input: ByteBuffer) -> ([(frame: Frame, bytes: ByteBuffer)], Ending) {
    var rest = input
    var buffer = ByteBuffer()
    var decoder = FrameDecoder(maxPayload: maxPayload)
    var frames: [(frame: Frame, bytes: ByteBuffer)] = []
    var turn = 0
    while rest.readableBytes > 0 {
        var chunk = rest.readSlice(length: min(chunkSizes[turn % chunkSizes.count], rest.readableBytes))!
        turn += 1
        buffer.writeBuffer(&chunk)
        do {
            while let frame = try decoder.next(&buffer) { frames.append((frame, ByteBuffer())) }
        } catch let error as WireError {
            return (frames, .failed(error))
        } catch {
            preconditionFailure("FrameDecoder threw a non-WireError: \(error)")
        }
    }
    return (frames, .incomplete(buffered: buffer.readableBytes))
}

let chunkSizes = [1, 1, 5, 2, 1, 6, 3, 1, 17, 4, 1, 64]

/// Formats what logs and `postern ctl` show of a frame, so the formatting code runs on fuzzed values.
func describe(_ frame: Frame) {
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
            precondition(Endpoint(parsing: e.description) == e, "endpoint \(e) does not parse back")
        }
    }
    for a in addresses {
        precondition(IPAddress(a.description) == a, "address \(a) does not parse back")
    }
}
