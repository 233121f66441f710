import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

/// How stream bytes are cut into frames and buffers on the way through the tunnel (issue 15): small
/// DATA travels in one buffer with its header (one TLS record, not two), large DATA is not copied.
final class RelayCoalescingTests: XCTestCase {
    private let port: UInt32 = 5

    private func data(_ bytes: ByteBuffer) -> Frame { .data(.init(portID: port, bytes: bytes)) }

    /// The buffers the tunnel channel was given since the last call.
    private func buffersOut(_ tunnel: EmbeddedTunnel) throws -> [ByteBuffer] {
        tunnel.channel.embeddedEventLoop.run()
        var out: [ByteBuffer] = []
        while let b = try tunnel.channel.readOutbound(as: ByteBuffer.self) { out.append(b) }
        return out
    }

    private func decode(_ buffers: [ByteBuffer]) throws -> [Frame] {
        var all = ByteBuffer()
        for var b in buffers { all.writeBuffer(&b) }
        var decoder = FrameDecoder()
        var frames: [Frame] = []
        while let f = try decoder.next(&all) { frames.append(f) }
        XCTAssertEqual(all.readableBytes, 0)
        return frames
    }

    func testSmallDataTravelsInOneBufferWithItsHeaderAndTheControlFramesBeforeIt() throws {
        let tunnel = try EmbeddedTunnel()
        _ = try buffersOut(tunnel)
        let request = ByteBuffer(repeating: 0x61, count: 64)
        tunnel.session.send(.window(.init(portID: port, increment: 7)))
        tunnel.session.sendData(portID: port, request)
        let buffers = try buffersOut(tunnel)
        XCTAssertEqual(buffers.count, 1, "WINDOW, DATA header and payload in one write: one TLS record")
        XCTAssertEqual(buffers.first?.readableBytes, 14 + Frame.headerLength + 4 + 64)
        XCTAssertEqual(try decode(buffers), [.window(.init(portID: port, increment: 7)), data(request)])
    }

    func testLargeDataIsNotCopied() throws {
        let tunnel = try EmbeddedTunnel()
        _ = try buffersOut(tunnel)
        let n = TunnelSession.inlinePayloadLimit + 1
        let payload = ByteBuffer(repeating: 0x62, count: n)
        tunnel.session.sendData(portID: port, payload)
        let buffers = try buffersOut(tunnel)
        XCTAssertEqual(buffers.map(\.readableBytes), [Frame.headerLength + 4, n], "the header apart, the payload as it was")
        XCTAssertEqual(try decode(buffers), [data(payload)])
    }

    /// Abuse: a flood of small DATA (one port's or many ports' tiny writes) is gathered, but never into
    /// one unbounded buffer: each write to the channel stays near the flush threshold.
    func testAFloodOfSmallDataIsGatheredInBoundedBuffers() throws {
        let tunnel = try EmbeddedTunnel()
        _ = try buffersOut(tunnel)
        let tiny = ByteBuffer(repeating: 0x63, count: 64)
        for _ in 0..<20_000 { tunnel.session.sendData(portID: port, tiny) }
        let buffers = try buffersOut(tunnel)
        let frameSize = Frame.headerLength + 4 + 64
        XCTAssertEqual(buffers.reduce(0) { $0 + $1.readableBytes }, 20_000 * frameSize)
        XCTAssertLessThanOrEqual(buffers.map(\.readableBytes).max() ?? 0, (128 << 10) + frameSize)
        XCTAssertGreaterThan(buffers.count, 1)
    }
}
