import NIOCore
import NIOPosix
import PosternCore
import PosternPcap
import PosternSOCKS
import PosternTunnel
import PosternWire

/// Everything `postern server` needs, already validated.
public struct ServerConfiguration: Sendable {
    public var listen: ListenAddress
    public var secrets: SecretBook
    public var admin: ListenAddress?
    /// Bearer token every admin request must carry. Without one the admin API refuses every
    /// request: it has no credential-less mode, not even on loopback.
    public var adminToken: [UInt8]?
    public var adminLimits = AdminLimits()
    /// `--admin-tls`: the admin API speaks HTTPS through this transport (the server's TLS key, no
    /// client certificate asked for); nil: plain HTTP.
    public var adminTransport: ServerTransport?
    public var forwards: [ForwardSpec]
    public var settings: SessionSettings
    public var transport: ServerTransport
    /// A UDP flow of a forward without traffic for this long is closed on both sides.
    public var udpIdleTimeout: TimeAmount = .seconds(60)
    /// Datagrams a new UDP flow of a forward keeps while its port is being opened.
    public var udpFlowBacklog = 64
    /// UDP flows (remote or LAN peers) one forward holds at once; a new peer's datagrams past it are
    /// dropped. Each flow of a `udp:ADDR:PORT=NAME/…` forward holds a mediator port, so this keeps one
    /// forward's senders from spending the mediator's whole `--max-ports` (4096 by default).
    public var udpMaxFlows = DatagramFlowLimits.defaultMaxFlows
    /// Connections on the service port that have not authenticated yet, in all and from one IP
    /// address. When more arrive, one that got least far is dropped at random, never one that sent
    /// HELLO (`UnauthenticatedConnections`): a flood of new connections cannot push a real mediator
    /// out in the middle of its handshake.
    public var maxUnauthenticated = 256
    public var maxUnauthenticatedPerAddress = 16
    /// Failed proofs (wrong secret, unknown name, wrong certificate) one IP address may make in a row;
    /// past them its new connections are closed at accept until `failedProofWindow` has refilled its
    /// bucket (`FailedProofThrottle`): a guesser gets this many guesses per window.
    public var maxFailedProofs = 5
    public var failedProofWindow: TimeAmount = .seconds(10)
    /// Ports the server keeps for one mediator; ACCEPTED beyond it is answered with RESET.
    public var maxPortsPerSession = 4096
    /// CONNECTs sent to one mediator at once, queued beyond (with a bound and a timeout) rather than
    /// refused: the mediator's `--max-pending-connects` (default 256); its refusals lower it.
    public var connectAdmission = ConnectAdmission.Settings()
    /// Mediators connected at once (each name holds at most one session).
    public var maxMediators = 1024
    /// Event loops (threads) of the server, `--threads` (1-64): loop 0 carries the control plane,
    /// mediator sessions are spread over all of them (docs/architecture.md, "Threads").
    public var threads = ServerConfiguration.defaultThreads
    /// One loop per core, at most `maxThreads`.
    public static var defaultThreads: Int { min(max(System.coreCount, 1), maxThreads) }
    public static let maxThreads = 64
    /// How long a connected mediator has to answer a keepalive when another session claims its name.
    public var nameProbeTimeout: TimeAmount = .seconds(3)
    /// Keepalive and dead timeout of the sessions' UDP channels (docs/protocol.md §9.7).
    public var udpChannel = UDPChannelSettings()
    /// Whether the server binds the service port number over UDP for UDP channels; without it every
    /// datagram rides the TCP channel, as in version 1.
    public var udpChannelEnabled = true
    public var softwareVersion: String
    /// `--metrics ADDR:PORT`: `GET /metrics` without the admin token (nil: only on the admin API).
    public var metrics: ListenAddress?
    /// SOCKS5 listeners (`--socks`), and what they share.
    public var socks: [SOCKSListenerSpec] = []
    public var socksSettings = SOCKSSettings()
    /// `--socks-no-auth`: listeners off loopback may run without `--socks-users` (checked again for
    /// listeners a reload or the API adds).
    public var socksNoAuth = false
    /// `--pcap`: record the tcp: and udp: forwards' traffic to mediators into a pcap file (nil: no recording).
    public var pcap: PcapSettings?
    /// TUN mode (`--tun`): a tun device per mediator that offers it. Off by default.
    public var tunEnabled = false
    /// The MTU the server asks for (the mediator may lower it): leaves room for the UDP channel's
    /// overhead (IPv4 20, UDP 8, header and tag 36, type 1) on a 1,500-byte path.
    public var tunMTU = 1400
    /// Where TUN mode's undo journals live (the server's state directory).
    public var tunStateDirectory = "/var/lib/postern"
    /// Whether TUN mode's devices ask the kernel for offloads (`--tun-offload on|off`).
    public var tunOffload = true

    public init(
        listen: ListenAddress, secrets: SecretBook, admin: ListenAddress?, forwards: [ForwardSpec],
        settings: SessionSettings = SessionSettings(), transport: ServerTransport = PlainTransport(),
        softwareVersion: String
    ) {
        self.listen = listen
        self.secrets = secrets
        self.admin = admin
        self.forwards = forwards
        self.settings = settings
        self.transport = transport
        self.softwareVersion = softwareVersion
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
