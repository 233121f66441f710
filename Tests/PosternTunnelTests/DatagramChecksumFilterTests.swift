import NIOCore
import NIOPosix
import PosternTunnel
import XCTest

/// The checksum filter attaches to a real UDP socket and passes every datagram whole: it only moves
/// the kernel's checksum check before queueing (the crash it prevents needs a bad checksum on the
/// wire, which `Tests/lab/t_udp_nat.sh` sends through the lab's veths).
final class DatagramChecksumFilterTests: XCTestCase {
    private final class Inbox: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        var received: [ByteBuffer] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received.append(unwrapInboundIn(data).data)
        }
    }

    func testAFilteredSocketReceivesEveryDatagramWhole() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let inbox = Inbox()
        let receiver = try DatagramBootstrap(group: group)
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { channel in DatagramChecksumFilter.attach(to: channel).flatMap { channel.pipeline.addHandler(inbox) } }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? receiver.close().wait() }
        let sender = try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? sender.close().wait() }
        let sizes = [0, 1, 77, 1400, 8000, 65_507]
        for (i, n) in sizes.enumerated() {
            let bytes = ByteBuffer(bytes: (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) })
            try sender.writeAndFlush(AddressedEnvelope(remoteAddress: receiver.localAddress!, data: bytes)).wait()
        }
        let deadline = NIODeadline.now() + .seconds(5)
        var got: [ByteBuffer] = []
        while got.count < sizes.count, NIODeadline.now() < deadline {
            usleep(20_000)
            got = try receiver.eventLoop.submit { inbox.received }.wait()
        }
        XCTAssertEqual(got.map(\.readableBytes), sizes)
        for (i, n) in sizes.enumerated() where i < got.count {
            XCTAssertEqual(got[i], ByteBuffer(bytes: (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }), "datagram \(i) intact")
        }
    }
}
