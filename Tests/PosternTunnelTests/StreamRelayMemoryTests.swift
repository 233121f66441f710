import NIOCore
import NIOEmbedded
import PosternCore
import PosternTunnel
import PosternWire
import XCTest

/// What a relayed socket that stops reading makes a relay hold: the bytes waiting for it, not the
/// large buffers the tunnel read them in.
final class StreamRelayMemoryTests: XCTestCase {
    /// Holds every write, as a socket whose peer stopped reading; writes complete when released.
    final class StalledSocket: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        private(set) var waiting: [(ByteBuffer, EventLoopPromise<Void>?)] = []

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            waiting.append((unwrapOutboundIn(data), promise))
        }

        func flush(context: ChannelHandlerContext) {}

        /// The peer reads again: the oldest `n` writes complete.
        func release(_ n: Int) {
            for (_, promise) in waiting.prefix(n) { promise?.succeed(()) }
            waiting.removeFirst(n)
        }
    }

    /// `count` bytes of `fill`, as a slice of a 1 MiB buffer (a payload cut out of a large tunnel read).
    private func sliceOfLargeRead(_ count: Int, _ fill: UInt8) -> ByteBuffer {
        var read = ByteBuffer(repeating: 0, count: 1 << 20)
        read.setRepeatingByte(fill, count: count, at: 4096)
        return read.getSlice(at: 4096, length: count)!
    }

    func testBytesThatMustWaitDoNotKeepTheTunnelsReadBuffer() throws {
        let tunnel = try EmbeddedTunnel(window: 1 << 22)
        let relay = StreamRelay(portID: 5, session: tunnel.session)
        tunnel.session.register(relay)
        let socket = try EmbeddedSocket()
        let stalled = StalledSocket()
        try socket.channel.pipeline.syncOperations.addHandler(stalled, position: .first)
        try socket.join(relay)

        for (i, fill) in [UInt8(1), 2, 3].enumerated() {
            try tunnel.deliver(.data(.init(portID: 5, bytes: sliceOfLargeRead(1000 + i, fill))))
        }
        XCTAssertEqual(stalled.waiting.count, 3)
        XCTAssertEqual(
            stalled.waiting[0].0.storageCapacity, 1 << 20,
            "the first write goes out as it came (a socket that reads takes it at once)")
        for (buffer, _) in stalled.waiting.dropFirst() {
            XCTAssertLessThan(buffer.storageCapacity, 8192, "queued behind a pending write: copied out of the 1 MiB read")
        }
        XCTAssertEqual(
            stalled.waiting.map { Array($0.0.readableBytesView) },
            [[UInt8](repeating: 1, count: 1000), [UInt8](repeating: 2, count: 1001), [UInt8](repeating: 3, count: 1002)],
            "the same bytes, in order")

        // The socket drains: the next write has nothing before it and is not copied.
        stalled.release(3)
        try tunnel.deliver(.data(.init(portID: 5, bytes: sliceOfLargeRead(500, 4))))
        XCTAssertEqual(stalled.waiting.last?.0.storageCapacity, 1 << 20)
        XCTAssertEqual(tunnel.session.bufferedBytes, 500, "the session's budget counts what still waits")

        // A payload that fills most of its buffer is never copied, even behind a pending write.
        var whole = ByteBuffer(repeating: 7, count: 40_000)
        whole.reserveCapacity(40_000)
        try tunnel.deliver(.data(.init(portID: 5, bytes: whole)))
        XCTAssertEqual(stalled.waiting.count, 2)
        XCTAssertEqual(stalled.waiting.last?.0.storageCapacity, whole.storageCapacity)
        stalled.release(2)
        XCTAssertEqual(tunnel.session.bufferedBytes, 0)
    }
}
