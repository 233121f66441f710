import NIOCore
import NIOEmbedded
import NIOPosix
import PosternTunnel
import XCTest

/// The UDP batching of the channel and forward sockets: writes leave in one flush per loop pass
/// (`DatagramWriteBatcher`), and sockets with `batchedDatagramOptions` read many datagrams per call
/// without cutting any, up to the largest UDP datagram.
final class DatagramBatchingTests: XCTestCase {
    func envelope(_ n: Int, _ fill: UInt8) throws -> AddressedEnvelope<ByteBuffer> {
        AddressedEnvelope(
            remoteAddress: try SocketAddress(ipAddress: "192.0.2.1", port: 9), data: ByteBuffer(repeating: fill, count: n))
    }

    func testWritesOfOnePassLeaveInOneFlushInOrder() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 9)).wait()
        let writer = DatagramWriteBatcher(channel: channel)
        for i in 0..<5 { writer.write(try envelope(10 + i, UInt8(i))) }
        XCTAssertNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self), "nothing flushed within the pass")
        channel.embeddedEventLoop.run()
        var sizes: [Int] = []
        while let e = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) { sizes.append(e.data.readableBytes) }
        XCTAssertEqual(sizes, [10, 11, 12, 13, 14], "all five, in order")
        XCTAssertEqual(writer.written, 5)
        XCTAssertEqual(writer.flushes, 1, "one flush for the pass")
        // The next pass gets its own flush.
        writer.write(try envelope(3, 9))
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)?.data.readableBytes, 3)
        XCTAssertEqual(writer.flushes, 2)
    }

    /// Real sockets on loopback: a burst of datagrams of every size up to 65,507 bytes, sent with the
    /// batcher, arrives complete and intact on a socket that reads them in batches of 16.
    func testBatchedSocketReadsEveryDatagramWholeUpToTheLargest() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let collector = Collector()
        let receiver = try DatagramBootstrap(group: group)
            .batchedDatagramOptions()
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: 4 * 1024 * 1024)
            .channelInitializer { $0.pipeline.addHandler(collector) }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? receiver.close().wait() }
        XCTAssertEqual(try receiver.getOption(ChannelOptions.datagramVectorReadMessageCount).wait(), RelayBuffers.datagramBatch)
        let sender = try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? sender.close().wait() }
        let shapes = [1, 1_400, 8_000, 65_507]
        let sizes: [Int] = (0..<60).map { i in i % 4 == 0 ? 1 + i : shapes[i % 4] - i % 7 }
        let to = receiver.localAddress!
        try sender.eventLoop.submit {
            let writer = DatagramWriteBatcher(channel: sender)
            for (i, size) in sizes.enumerated() {
                writer.write(AddressedEnvelope(remoteAddress: to, data: ByteBuffer(repeating: UInt8(truncatingIfNeeded: i), count: size)))
            }
        }.wait()
        let deadline = NIODeadline.now() + .seconds(10)
        while try receiver.eventLoop.submit({ collector.received.count }).wait() < sizes.count, NIODeadline.now() < deadline {
            usleep(10_000)
        }
        let received = try receiver.eventLoop.submit { collector.received }.wait()
        XCTAssertEqual(received.map(\.readableBytes), sizes, "every datagram, whole, in order")
        for (i, buffer) in received.enumerated() {
            XCTAssertTrue(buffer.readableBytesView.allSatisfy { $0 == UInt8(truncatingIfNeeded: i) }, "datagram \(i) intact")
        }
    }

    final class Collector: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        var received: [ByteBuffer] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            // A copy: the batch's receive buffer is reused for the next batch.
            let bytes = unwrapInboundIn(data).data
            var copy = ByteBuffer()
            copy.writeImmutableBuffer(bytes)
            received.append(copy)
        }
    }
}
