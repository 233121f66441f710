import Logging
import NIOCore
import NIOPosix
import PosternCore
import PosternSOCKS
import PosternTunnel
import PosternWire

/// One UDP ASSOCIATE: a UDP socket on the server for the client, and a UDP port on the mediator per
/// address family (IPv4 opened with the association, IPv6 with the first IPv6 destination; the
/// IPv6 datagrams that arrive while that port opens wait for it, up to `maxWaiting`). A
/// client datagram loses its SOCKS header and leaves the mediator's port for its destination; an
/// answer gets a header naming its sender and goes back to the client. The datagrams travel the
/// session's `datagramPath` (the UDP channel while it is up).
///
/// Only the client may use the association: datagrams from any other IP address than its control
/// connection's (or, when the request named a port, from any other port) are dropped. Fragments,
/// malformed headers and destinations given as names (the tunnel's DATAGRAM carries addresses
/// only) are dropped and counted. The mediator applies its `--allow` rules to every destination and
/// logs what it drops. The association ends with its control connection (`close`), or when the
/// session ends (`ended`).
final class SOCKSUDPAssociation: ChannelInboundHandler, DatagramPathReceiver {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let link: MediatorLink
    private let clientIP: IPAddress
    private let declaredPort: Int?
    private let label: String
    private let logger: Logger
    private var ended: (() -> Void)?
    private var channel: Channel?
    /// Where answers go: the client's address as its latest datagram showed it.
    private var client: SocketAddress?
    private var ports: [Bool: UDPForwardToMediator.OpenedPort] = [:]
    private var openingV6 = false
    /// IPv6 datagrams that arrived while the IPv6 port was opening, in arrival order: the first one
    /// to an IPv6 destination is what opens the port, and a DNS client would otherwise wait out its
    /// retry timer for an answer to a query that was never sent.
    private var waitingV6: [(to: Endpoint, payload: ByteBuffer)] = []
    /// The mediator could not open an IPv6 port: IPv6 datagrams are dropped from then on.
    private var noV6 = false
    /// The same bound a `udp:` forward's flow keeps while its port opens (`DatagramFlowLimits`).
    static let maxWaiting = DatagramFlowLimits().maxBacklog
    private var closed = false
    var drops = DatagramDrops()
    /// Datagrams dropped here for what they hold: fragments, malformed headers, names.
    private(set) var refused = 0

    init(link: MediatorLink, clientIP: IPAddress, declared: Endpoint, label: String, logger: Logger, ended: @escaping () -> Void) {
        self.link = link
        self.clientIP = clientIP.normalized
        self.declaredPort = declared.port == 0 ? nil : Int(declared.port)
        self.label = label
        self.logger = logger
        self.ended = ended
    }

    /// Opens the mediator's IPv4 port and binds the client's socket on `address` (where the control
    /// connection arrived); succeeds with the socket's address for the reply.
    func start(bindingTo address: String, on eventLoop: EventLoop) -> EventLoopFuture<Endpoint> {
        open(v6: false).flatMap { [self] _ in
            DatagramBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramAllocator)
                .channelInitializer { $0.pipeline.addHandler(self) }
                .bind(host: address, port: 0)
        }
        .flatMapThrowing { [self] channel in
            self.channel = channel
            if closed { channel.close(promise: nil) }
            guard let bound = channel.localAddress?.endpoint else {
                throw OperationError(code: .internalError, message: "no local address")
            }
            return bound
        }
    }

    private func open(v6: Bool) -> EventLoopFuture<Void> {
        link.openUDPPort(v6: v6, owner: "\(label) UDP ASSOCIATE").map { [self] port in
            guard !closed else { return port.close() }
            ports[v6] = port
            port.path.attach(portID: port.portID, self)
            guard v6 else { return }
            let waiting = waitingV6
            waitingV6 = []
            for datagram in waiting {
                port.path.offer(portID: port.portID, peer: datagram.to, bytes: datagram.payload, drops: &drops)
            }
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        ended = nil
        for port in ports.values {
            port.path.detach(portID: port.portID)
            port.close()
        }
        ports.removeAll()
        drops.count(.notOpened, waitingV6.count)
        waitingV6 = []
        channel?.close(promise: nil)
        if drops.total > 0 || refused > 0 {
            logger.info("\(label): UDP association ended; \(refused) datagrams refused here, \(drops.total) dropped on the way")
        }
    }

    // MARK: - From the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let source = envelope.remoteAddress
        guard let ip = source.ipAddress.flatMap(IPAddress.init), ip.normalized == clientIP,
            declaredPort == nil || source.port == declaredPort
        else {
            drops.count(.unsolicited)
            return
        }
        switch SOCKSUDPHeader.parse(envelope.data) {
        case .fragment, .malformed:
            refuse("a fragment or a malformed header")
        case .datagram(let destination, let payload):
            guard case .ip(let address) = destination.host else { return refuse("a destination given as a name") }
            client = source
            let v6 = address.normalized.isIPv6
            let to = Endpoint(address.normalized, destination.port)
            if let port = ports[v6] {
                port.path.offer(portID: port.portID, peer: to, bytes: payload, drops: &drops)
            } else if v6 {
                if !openingV6 {
                    openingV6 = true
                    open(v6: true).whenFailure { [self] error in
                        noV6 = true
                        drops.count(.notOpened, waitingV6.count)
                        waitingV6 = []
                        logger.info("\(label): no IPv6 UDP port on '\(link.name)' (\(error)); IPv6 datagrams are dropped")
                    }
                }
                if let port = ports[true] {
                    port.path.offer(portID: port.portID, peer: to, bytes: payload, drops: &drops)
                } else if !noV6, !closed, waitingV6.count < Self.maxWaiting {
                    // A copy: the datagram is a slice of the socket's receive buffer.
                    var copy = context.channel.allocator.buffer(capacity: payload.readableBytes)
                    copy.writeImmutableBuffer(payload)
                    waitingV6.append((to, copy))
                } else {
                    drops.count(.notOpened)
                }
            } else {
                drops.count(.notOpened)
            }
        }
    }

    private func refuse(_ what: String) {
        refused += 1
        if refused.isWorthALogLine { logger.info("\(label): dropped \(what) (\(refused) so far)") }
    }

    // MARK: - From the mediator

    func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
        guard let client, let channel else { return }
        var datagram = channel.allocator.buffer(capacity: SOCKSUDPHeader.length(for: peer) + bytes.readableBytes)
        SOCKSUDPHeader.write(from: peer, into: &datagram)
        var payload = bytes
        datagram.writeBuffer(&payload)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: datagram), promise: nil)
    }

    func datagramPathClosed(portID: UInt32) {
        // The session is gone, and with it every port: the association ends.
        let f = ended
        close()
        f?()
    }
}
