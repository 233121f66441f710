import NIOCore
import NIOEmbedded
import PosternTunnel
import PosternWire
import XCTest

/// The tunnel's frame splitter on an `EmbeddedChannel`: the same frames whatever the reads' sizes,
/// DATA payloads sliced from the transport's buffer, and only a split frame kept between reads, in a
/// buffer of that frame's size (a burst does not leave its buffer behind).
final class FrameDecoderHandlerTests: XCTestCase {
    private func frames() -> [Frame] {
        var out: [Frame] = []
        for i in 0..<40 {
            out.append(.data(.init(portID: UInt32(i), bytes: ByteBuffer(repeating: UInt8(i), count: 1 + i * 97))))
            out.append(.ping(.init(token: UInt64(i))))
            out.append(.window(.init(portID: UInt32(i), increment: UInt32(i) + 1)))
        }
        return out
    }

    private func encoded(_ frames: [Frame]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for frame in frames { buffer.writeFrame(frame) }
        return buffer
    }

    private func channel() throws -> (EmbeddedChannel, FrameDecoderHandler) {
        let handler = FrameDecoderHandler(maxPayload: FrameDecoder.defaultMaxPayload)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(handler)
        return (channel, handler)
    }

    private func readAll(_ channel: EmbeddedChannel) throws -> [Frame] {
        var out: [Frame] = []
        while let frame = try channel.readInbound(as: Frame.self) { out.append(frame) }
        return out
    }

    func testTheSameFramesWhateverTheReadSizes() throws {
        let sent = frames()
        let bytes = encoded(sent)
        for size in [1, 2, 5, 6, 7, 100, 4096, bytes.readableBytes] {
            let (channel, handler) = try channel()
            var rest = bytes
            while rest.readableBytes > 0 {
                try channel.writeInbound(rest.readSlice(length: min(size, rest.readableBytes))!)
            }
            XCTAssertEqual(try readAll(channel), sent, "reads of \(size) bytes")
            XCTAssertEqual(handler.heldBytes, 0, "nothing kept once every frame is whole (reads of \(size))")
            XCTAssertEqual(handler.heldCapacity, 0)
            _ = try channel.finish()
        }
    }

    func testDataPayloadsAreSlicesOfTheTransportsBuffer() throws {
        let (channel, _) = try channel()
        let input = encoded(frames())
        let range = input.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress! + $0.count) }
        try channel.writeInbound(input)
        var datas = 0
        for case .data(let d) in try readAll(channel) {
            let start = d.bytes.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
            XCTAssertTrue(range.contains(start), "port \(d.portID): the payload was copied")
            datas += 1
        }
        XCTAssertEqual(datas, 40)
    }

    func testABurstEndingInTheMiddleOfAFrameKeepsOnlyThatFrame() throws {
        let (channel, handler) = try channel()
        // A megabyte of small frames, then the first 10 bytes of a 3,000-byte DATA frame.
        var burst = ByteBuffer()
        burst.reserveCapacity(1 << 20 + 64)
        var i: UInt64 = 0
        while burst.readableBytes < 1 << 20 {
            burst.writeFrame(.ping(.init(token: i)))
            i += 1
        }
        let split = encoded([.data(.init(portID: 7, bytes: ByteBuffer(repeating: 0xAB, count: 3000)))])
        burst.writeImmutableBuffer(split.getSlice(at: split.readerIndex, length: 10)!)
        try channel.writeInbound(burst)
        XCTAssertEqual(try readAll(channel).count, Int(i))
        XCTAssertEqual(handler.heldBytes, 10)
        XCTAssertLessThanOrEqual(
            handler.heldCapacity, 4096, "the split frame is kept in a buffer its size, not in the 1 MiB burst's")
        XCTAssertGreaterThanOrEqual(handler.heldCapacity, split.readableBytes, "room for the whole frame: no regrowth")

        // The rest of it, and one more frame in the same read.
        var tail = split.getSlice(at: split.readerIndex + 10, length: split.readableBytes - 10)!
        tail.writeFrame(.ping(.init(token: 99)))
        try channel.writeInbound(tail)
        let out = try readAll(channel)
        XCTAssertEqual(out, [.data(.init(portID: 7, bytes: ByteBuffer(repeating: 0xAB, count: 3000))), .ping(.init(token: 99))])
        XCTAssertEqual(handler.heldCapacity, 0, "nothing kept once the frame is whole")
    }

    func testAHeaderSplitAcrossReads() throws {
        let (channel, _) = try channel()
        let frame = Frame.data(.init(portID: 3, bytes: ByteBuffer(repeating: 1, count: 50)))
        let bytes = encoded([frame])
        for cut in 1..<Frame.headerLength {
            try channel.writeInbound(bytes.getSlice(at: 0, length: cut)!)
            XCTAssertEqual(try readAll(channel), [])
            try channel.writeInbound(bytes.getSlice(at: cut, length: bytes.readableBytes - cut)!)
            XCTAssertEqual(try readAll(channel), [frame], "header cut after \(cut) bytes")
        }
    }

    func testALengthBeyondTheLimitFailsBeforeAnythingIsKept() throws {
        let handler = FrameDecoderHandler(maxPayload: 1024)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(handler)
        var forged = ByteBuffer()
        forged.writeInteger(UInt32(1 << 30))  // a 1 GiB DATA frame announced
        forged.writeInteger(Frame.Data.type)
        forged.writeInteger(UInt8(0))
        forged.writeBytes([1, 2, 3])
        XCTAssertThrowsError(try channel.writeInbound(forged)) { error in
            guard case WireError.frameTooLarge = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(handler.heldCapacity, 0, "nothing buffered for the forged length")
        // Later bytes, even valid frames, are not read after the failure.
        try channel.writeInbound(encoded([.ping(.init(token: 1))]))
        XCTAssertNil(try channel.readInbound(as: Frame.self))
    }

    func testAForgedHeaderSplitAcrossReadsFailsOnceWhole() throws {
        let (channel, handler) = try channel()
        var forged = ByteBuffer()
        forged.writeInteger(UInt32(4))
        forged.writeInteger(UInt8(0xEE))  // no such frame type
        forged.writeInteger(UInt8(0))
        try channel.writeInbound(forged.getSlice(at: 0, length: 3)!)
        XCTAssertEqual(handler.heldBytes, 3)
        XCTAssertThrowsError(try channel.writeInbound(forged.getSlice(at: 3, length: 3)!)) { error in
            guard case WireError.unknownType(0xEE) = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(handler.heldCapacity, 0)
    }
}
