import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// A UDP port opened by OPEN, filtered like a stateful firewall. A DATAGRAM from the server is sent if
/// the policy allows its destination or the destination is a known peer (one that sent to this port).
/// A datagram that arrives goes to the server as DATAGRAM with its sender if the sender is a peer this
/// port sent to (a reply), or if the mediator exposes its LAN (`--allow-listen` or `--allow-redirect`:
/// reverse UDP forwards); others are dropped and counted.
final class DatagramPort: ChannelInboundHandler, TunnelPort {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let portID: UInt32
    private let session: TunnelSession
    private let policy: Policy
    private var context: ChannelHandlerContext?
    private(set) var dropped: UInt64 = 0
    /// Peers this port exchanged datagrams with, so replies pass the policy both ways. Bounded: the
    /// oldest half is forgotten when it fills.
    private var senders: [Endpoint: UInt64] = [:]
    private var loggedUnsolicited = false
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
        guard senders[peer] != nil || policy.listenEnabled || policy.redirectEnabled else {
            dropped &+= 1
            if !loggedUnsolicited {
                loggedUnsolicited = true
                session.logger.warning(
                    "port \(portID): unsolicited datagram from \(peer) dropped by policy (--allow-listen or --allow-redirect is off)")
            }
            return
        }
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
        remember(d.peer)
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
