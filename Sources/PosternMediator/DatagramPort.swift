import Logging
import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// A UDP port opened by OPEN or REDIRECT (which `--allow-redirect` permits), filtered like a stateful
/// firewall. A datagram from the server is sent if the policy allows its destination or the
/// destination is a known peer (one that sent to this port). A datagram that arrives goes to the
/// server, with its sender, if the sender is a peer this port sent to (a reply), or if the mediator
/// exposes its LAN (`--allow-listen` or `--allow-redirect`: reverse UDP forwards, redirected ports);
/// others are dropped and counted. The peers it remembers are bounded (past 4,096 the least recently
/// heard half is forgotten), so a flood of LAN senders holds nothing more. The datagrams travel the
/// session's `DatagramPath`, whose size rule applies. Peers are known and judged by their normalised
/// address (a dual-stack socket sees IPv4 peers as `::ffff:a.b.c.d`), so the mapped form of an
/// address is the same peer and meets the same rules; datagrams still go to the address as given.
final class DatagramPort: ChannelInboundHandler, DatagramPathReceiver {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let portID: UInt32
    let path: DatagramPath
    private let policy: Policy
    private let logger: Logger
    private var context: ChannelHandlerContext?
    /// Datagrams to LAN peers leave in one `sendmmsg` per event-loop pass, not one syscall each.
    private var writer: DatagramWriteBatcher?
    private(set) var drops = DatagramDrops()
    /// Peers this port exchanged datagrams with (normalised), so replies pass the policy both ways.
    private var peers = DatagramPeerMemory<Endpoint>(capacity: 4096)
    private var loggedUnsolicited = false
    var local: Endpoint
    /// Sends DENIED for this port (docs/protocol.md §6.5): set when its OPEN asked for the reports.
    var reportDenied: ((UInt32) -> Void)?
    private var deniedReports = DeniedDatagramReports(interval: .milliseconds(Int64(Frame.Denied.reportIntervalMillis)))

    init(portID: UInt32, path: DatagramPath, policy: Policy, local: Endpoint, logger: Logger) {
        self.portID = portID
        self.path = path
        self.policy = policy
        self.local = local
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        writer = DatagramWriteBatcher(channel: context.channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        writer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let peer = envelope.remoteAddress.endpoint, case .ip(let address) = peer.host else { return }
        let known = Endpoint(address.normalized, peer.port)
        guard peers.contains(known) || policy.listenEnabled || policy.redirectEnabled else {
            drops.count(.unsolicited)
            if !loggedUnsolicited {
                loggedUnsolicited = true
                logger.warning(
                    "port \(portID): unsolicited datagram from \(peer) dropped by policy (--allow-listen or --allow-redirect is off)")
            }
            return
        }
        peers.remember(known)
        path.offer(portID: portID, peer: peer, bytes: envelope.data, drops: &drops)
    }

    func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
        guard let writer else { return }
        guard case .ip(let address) = peer.host, case let known = Endpoint(address.normalized, peer.port),
            peers.contains(known) || policy.allowsConnect(to: address, port: peer.port)
        else {
            drops.count(.denied)
            // Logged at the 1st, 10th, 100th…: each datagram of a flood to a denied destination (a
            // `udp:` forward's users write as fast as they like) made a log line of its own.
            let denied = drops[.denied]
            if denied.isWorthALogLine {
                logger.notice("port \(self.portID): datagram to \(peer) denied by policy (\(denied) so far on this port)")
            }
            if reportDenied != nil { report(deniedReports.denied(now: .now())) }
            return
        }
        peers.remember(known)
        let remote = SocketAddress(address, port: peer.port)
        writer.write(AddressedEnvelope(remoteAddress: remote, data: bytes))
    }

    /// Tells the server what the policy dropped, thinned (`DeniedDatagramReports`); what is gathered
    /// goes at the deadline, while the port is still open.
    private func report(_ action: DeniedDatagramReports.Action) {
        switch action {
        case .none:
            break
        case .send(let count):
            reportDenied?(count)
        case .flushAt(let deadline):
            context?.eventLoop.scheduleTask(deadline: deadline) { [weak self] in
                guard let self, self.context != nil, let count = self.deniedReports.flush(now: .now()) else { return }
                self.reportDenied?(count)
            }
        }
    }

    func datagramPathClosed(portID: UInt32) { close() }

    func close() {
        context?.close(promise: nil)
    }
}
