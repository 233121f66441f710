import NIOCore
import PosternTunnel
import PosternWire

/// The service port number over UDP (docs/protocol.md §9): hands each datagram to the session its
/// header names, whose `UDPChannelDatagramPath` checks and opens it. A datagram too short for a header
/// or naming no established session is counted as stray and dropped without a log line: anyone can
/// send to this port.
final class ServiceDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    /// The established sessions' paths by session id.
    private let route: (UInt64) -> UDPChannelDatagramPath?
    /// Datagrams that named no established session.
    private(set) var stray: UInt64 = 0

    init(route: @escaping (UInt64) -> UDPChannelDatagramPath?) {
        self.route = route
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        // Several when a mediator's GSO run arrived joined (UDP GRO): each is a datagram of its own.
        envelope.forEachSegment { received($0, from: envelope.remoteAddress) }
    }

    private func received(_ bytes: ByteBuffer, from source: SocketAddress) {
        // The session id sits at offset 4 of the header (§9.2); the path checks everything else.
        guard bytes.readableBytes >= UDPChannelHeader.length,
            let sessionID = bytes.getInteger(at: bytes.readerIndex + 4, as: UInt64.self),
            let path = route(sessionID)
        else {
            stray &+= 1
            return
        }
        path.received(bytes, from: source)
    }

    /// ICMP errors surface as read errors on a UDP socket (a mediator gone): nothing to do.
    func errorCaught(context: ChannelHandlerContext, error: Error) {}
}
