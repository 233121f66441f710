import NIOCore
import PosternTunnel

/// The mediator's UDP socket of a session's UDP channel, connected to the server's service port: hands
/// what arrives to the session's path, which checks and opens it (docs/protocol.md §9.5).
final class MediatorDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let path: UDPChannelDatagramPath

    init(path: UDPChannelDatagramPath) {
        self.path = path
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        // Several when the server's GSO run arrived joined (UDP GRO): each is a datagram of its own.
        envelope.forEachSegment { path.received($0, from: envelope.remoteAddress) }
    }

    /// A connected UDP socket reports ICMP errors (the server's port closed, a gateway refusing) as
    /// read errors: the channel's keepalives decide what they mean, so nothing is done here.
    func errorCaught(context: ChannelHandlerContext, error: Error) {}
}
