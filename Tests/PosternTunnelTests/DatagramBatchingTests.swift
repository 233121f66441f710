import Foundation
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
            .channelInitializer { $0.pipeline.addHandler(collector) }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? receiver.close().wait() }
        XCTAssertEqual(try receiver.getOption(ChannelOptions.datagramVectorReadMessageCount).wait(), RelayBuffers.datagramBatch)
        // The kernel buffer was raised: to what was asked, or as far as net.core.rmem_max lets it (it
        // reports twice the value set).
        let rmemMax =
            Int(
                (try? String(contentsOfFile: "/proc/sys/net/core/rmem_max", encoding: .utf8))?.trimmingCharacters(
                    in: .whitespacesAndNewlines) ?? "") ?? 0
        let rcvbuf = Int(try receiver.getOption(ChannelOptions.socketOption(.so_rcvbuf)).wait())
        XCTAssertGreaterThanOrEqual(rcvbuf, 2 * min(RelayBuffers.datagramSocketBuffer, rmemMax))
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

    /// UDP GSO: equal-sized datagrams to one destination leave as one write and arrive as the same
    /// datagrams, in order; a datagram of another size or destination breaks the run. The receiver
    /// has GRO on: it gets each run joined, and takes it apart.
    func testSegmentedWritesArriveAsTheSameDatagrams() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let collector = Collector()
        let receiver = try DatagramBootstrap(group: group)
            .batchedDatagramOptions(receiveOffload: true)
            .channelInitializer { $0.pipeline.addHandler(collector) }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? receiver.close().wait() }
        let sender = try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? sender.close().wait() }
        let to = receiver.localAddress!
        var sizes = Array(repeating: 1_448, count: 100) + [700] + Array(repeating: 1_448, count: 10) + [9_000, 1, 1]
        sizes += Array(repeating: 1_000, count: 30)
        let writer = try sender.eventLoop.submit { () -> DatagramWriteBatcher in
            let writer = DatagramWriteBatcher(channel: sender, segmentation: RelayBuffers.channelSegmentation)
            for (i, size) in sizes.enumerated() {
                writer.write(AddressedEnvelope(remoteAddress: to, data: ByteBuffer(repeating: UInt8(truncatingIfNeeded: i), count: size)))
            }
            return writer
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
        let (segmented, failures, on) = try sender.eventLoop.submit {
            (writer.segmentedWrites, writer.segmentationFailures, writer.isSegmenting)
        }.wait()
        // 100 x 1,448 + 700: 45, 45, 10 + 700; then 10; 9,000 alone; 1 + 1; 30 x 1,000.
        XCTAssertEqual(segmented, 6, "runs written as GSO datagrams")
        XCTAssertEqual(failures, 0)
        XCTAssertTrue(on)
        // With GRO on, the kernel hands the GSO runs over joined; the receiver takes them apart.
        let joined = try receiver.eventLoop.submit { collector.joined }.wait()
        XCTAssertEqual(joined, System.supportsUDPReceiveOffload ? 6 : 0, "reads that carried a joined run")
    }

    /// A kernel that refuses GSO writes (an interface without checksum offload, a smaller MTU): the
    /// refused run is lost like a dropped packet, and from then on the socket writes one by one.
    func testARefusedSegmentedWriteTurnsSegmentationOff() throws {
        guard System.supportsUDPSegmentationOffload else { throw XCTSkip("no UDP GSO on this system") }
        let refuse = RefuseSegmented()
        let channel = EmbeddedChannel(handler: refuse)
        defer { _ = try? channel.finish() }
        let writer = DatagramWriteBatcher(channel: channel, segmentation: RelayBuffers.channelSegmentation)
        // A peer that refuses (ICMP port unreachable) says nothing about GSO: it stays on.
        refuse.errno = ECONNREFUSED
        for _ in 0..<4 { writer.write(try envelope(1_000, 1)) }
        channel.embeddedEventLoop.run()
        XCTAssertEqual(writer.segmentationFailures, 0)
        XCTAssertTrue(writer.isSegmenting)
        refuse.errno = EIO
        for _ in 0..<4 { writer.write(try envelope(1_000, 1)) }
        channel.embeddedEventLoop.run()
        XCTAssertNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self), "the refused run is not sent")
        XCTAssertEqual(writer.segmentationFailures, 1)
        XCTAssertFalse(writer.isSegmenting)
        for _ in 0..<4 { writer.write(try envelope(1_000, 2)) }
        channel.embeddedEventLoop.run()
        var sent: [AddressedEnvelope<ByteBuffer>] = []
        while let e = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) { sent.append(e) }
        XCTAssertEqual(sent.map(\.data.readableBytes), [1_000, 1_000, 1_000, 1_000], "one by one now")
        XCTAssertTrue(sent.allSatisfy { $0.metadata?.segmentSize == nil })
    }

    /// Fails what the kernel would refuse: writes that ask for segmentation.
    final class RefuseSegmented: ChannelOutboundHandler {
        typealias OutboundIn = AddressedEnvelope<ByteBuffer>
        var errno = EIO

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            guard unwrapOutboundIn(data).metadata?.segmentSize == nil else {
                promise?.fail(IOError(errnoCode: errno, reason: "sendmsg"))
                return
            }
            context.write(data, promise: promise)
        }
    }

    func testJoinedDatagramsAreTakenApartBySegmentSize() throws {
        let from = try SocketAddress(ipAddress: "192.0.2.1", port: 9)
        func parts(_ n: Int, segment: Int?) -> [Int] {
            var sizes: [Int] = []
            AddressedEnvelope(
                remoteAddress: from, data: ByteBuffer(repeating: 1, count: n),
                metadata: .init(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: segment)
            ).forEachSegment { sizes.append($0.readableBytes) }
            return sizes
        }
        XCTAssertEqual(parts(10, segment: 3), [3, 3, 3, 1])
        XCTAssertEqual(parts(9, segment: 3), [3, 3, 3])
        XCTAssertEqual(parts(10, segment: nil), [10])
        XCTAssertEqual(parts(10, segment: 10), [10])
        XCTAssertEqual(parts(10, segment: 0), [10], "a nonsense size changes nothing")
        XCTAssertEqual(parts(0, segment: 3), [0])
    }

    final class Collector: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        var received: [ByteBuffer] = []
        /// Reads that carried several datagrams joined by UDP GRO.
        var joined = 0

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            if let size = envelope.metadata?.segmentSize, envelope.data.readableBytes > size { joined += 1 }
            envelope.forEachSegment { bytes in
                // A copy: the batch's receive buffer is reused for the next batch.
                var copy = ByteBuffer()
                copy.writeImmutableBuffer(bytes)
                received.append(copy)
            }
        }
    }
}
