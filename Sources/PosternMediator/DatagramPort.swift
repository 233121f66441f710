import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// A UDP port opened by OPEN: every datagram that arrives goes to the server as DATAGRAM with its
/// sender; every DATAGRAM from the server is sent to its destination, if the policy allows it or
/// the destination is a LAN peer that sent to this port (a reply, as a stateful firewall allows).
final class DatagramPort: ChannelInboundHandler, TunnelPort {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let portID: UInt32
    private let session: TunnelSession
    private let policy: Policy
    private var context: ChannelHandlerContext?
    private(set) var dropped: UInt64 = 0
    /// Peers that sent datagrams to this port, so replies to them pass the policy. Bounded: the
    /// oldest half is forgotten when it fills.
    private var senders: [Endpoint: UInt64] = [:]
    private var sequence: UInt64 = 0
    private let maxSenders = 4096
    var local: Endpoint

    init(portID: UInt32, session: TunnelSession, policy: Policy, local: Endpoint) {
        self.portID = portID
        self.session = session
        self.policy = policy
        self.local = local
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let peer = envelope.remoteAddress.endpoint else { return }
        remember(peer)
        // Datagrams have no flow control: when the tunnel is full they are dropped, as a router would.
        guard session.isWritable, envelope.data.readableBytes <= session.maxDataPayload - 32 else {
            dropped &+= 1
            return
        }
        session.send(.datagram(.init(portID: portID, peer: peer, bytes: envelope.data)))
    }

    func tunnelReceived(_ frame: Frame) {
        guard case .datagram(let d) = frame, let context else { return }
        guard case .ip(let address) = d.peer.host,
            senders[d.peer] != nil || policy.allowsConnect(to: address, port: d.peer.port)
        else {
            dropped &+= 1
            session.logger.notice("port \(portID): datagram to \(d.peer) denied by policy")
            return
        }
        guard let remote = try? SocketAddress(ipAddress: address, port: d.peer.port) else { return }
        context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: d.bytes)), promise: nil)
    }

    private func remember(_ peer: Endpoint) {
        sequence &+= 1
        senders[peer] = sequence
        if senders.count > maxSenders {
            let cutoff = sequence - UInt64(maxSenders / 2)
            senders = senders.filter { $0.value > cutoff }
        }
    }

    func tunnelBecameWritable() {}

    func tunnelClosed() { close() }

    func close() {
        context?.close(promise: nil)
    }
}
