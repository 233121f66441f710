import Atomics
import NIOCore
import PosternTunnel
import PosternWire

/// One socket of the service port over UDP (docs/protocol.md §9), on one event loop: hands each
/// datagram to the session its header names, whose `UDPChannelDatagramPath` checks and opens it. A
/// datagram too short for a header or naming no established session of this loop is counted as
/// stray and dropped without a log line: anyone can send to this port.
///
/// With `--threads` above 1 the port has one socket per loop, and the kernel hands each datagram to
/// the socket of the loop its session id names (`SessionLoopProgram`, `SessionLoops`): the sessions
/// of that loop are the only ones this handler knows, and no datagram hops between loops. Every
/// method but `stray` runs on `eventLoop`.
final class ServiceDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let eventLoop: EventLoop
    /// The established sessions of this loop: their paths by session id.
    private var paths: [UInt64: UDPChannelDatagramPath] = [:]
    /// Datagrams that named no established session; read by the mediators' views on their loops.
    private let strayCount = ManagedAtomic<UInt64>(0)
    var stray: UInt64 { strayCount.load(ordering: .relaxed) }

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Session `id` (of this loop) is established: its datagrams go to `path`.
    func add(_ id: UInt64, _ path: UDPChannelDatagramPath) {
        eventLoop.assertInEventLoop()
        paths[id] = path
    }

    func remove(_ id: UInt64) {
        eventLoop.assertInEventLoop()
        paths[id] = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        eventLoop.assertInEventLoop()
        let envelope = unwrapInboundIn(data)
        // Several when a mediator's GSO run arrived joined (UDP GRO): each is a datagram of its own.
        envelope.forEachSegment { received($0, from: envelope.remoteAddress) }
    }

    private func received(_ bytes: ByteBuffer, from source: SocketAddress) {
        // The session id sits at offset 4 of the header (§9.2); the path checks everything else.
        guard bytes.readableBytes >= UDPChannelHeader.length,
            let sessionID = bytes.getInteger(at: bytes.readerIndex + 4, as: UInt64.self),
            let path = paths[sessionID]
        else {
            strayCount.wrappingIncrement(ordering: .relaxed)
            return
        }
        path.received(bytes, from: source)
    }

    /// ICMP errors surface as read errors on a UDP socket (a mediator gone): nothing to do.
    func errorCaught(context: ChannelHandlerContext, error: Error) {}
}
