import Atomics
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
    /// The loop of the session with that id, when it is not the control loop's (`--threads`): its
    /// path is fed there, one hop per datagram (a task in NIO's queue of that loop).
    var loopOf: (UInt64) -> EventLoop? = { _ in nil }
    /// Datagrams that named no established session; read by the mediators' views on their loops.
    private let strayCount = ManagedAtomic<UInt64>(0)
    var stray: UInt64 { strayCount.load(ordering: .relaxed) }

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
            strayCount.wrappingIncrement(ordering: .relaxed)
            return
        }
        if let loop = loopOf(sessionID), !loop.inEventLoop {
            loop.execute { path.received(bytes, from: source) }
        } else {
            path.received(bytes, from: source)
        }
    }

    /// ICMP errors surface as read errors on a UDP socket (a mediator gone): nothing to do.
    func errorCaught(context: ChannelHandlerContext, error: Error) {}
}
