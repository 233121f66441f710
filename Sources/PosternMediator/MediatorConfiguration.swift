import Logging
import NIOCore
import PosternCore
import PosternPcap
import PosternTunnel

/// Everything `postern mediator` needs, already validated.
public struct MediatorConfiguration: Sendable {
    public var serverHost: String
    public var serverPort: Int
    public var name: String
    /// The shared secret: read from a file or the environment, never from argv.
    public var secret: [UInt8]
    public var policy: Policy
    public var settings: SessionSettings
    public var transport: ClientTransport
    /// How long CONNECT waits for the destination.
    public var connectTimeout: TimeAmount = .seconds(10)
    /// Ports one session may hold at once (opened, connected, accepted, listening, UDP). A server
    /// asking for more gets FAILED `limitExceeded`; connections accepted beyond it are refused.
    public var maxPorts = 4096
    /// CONNECTs in progress at once: each holds a socket and a timer until it resolves.
    public var maxPendingConnects = 256
    /// OPEN, REDIRECT, CONNECT and LISTEN requests a second one session may make (the same number may
    /// come at once); more fail with `limitExceeded`.
    public var maxRequestRate = 5000
    /// `--pcap`: record what the mediator's LAN sockets carry into a pcap file (nil: no recording).
    public var pcap: PcapSettings?
    /// Keepalive and dead timeout of the UDP channel (docs/protocol.md §9.7).
    public var udpChannel = UDPChannelSettings()
    /// Whether the mediator opens a UDP channel to the server's service port number once a session is
    /// established; without it every datagram rides the TCP channel, as in version 1.
    public var udpChannelEnabled = true
    /// Whether the mediator announces and takes pipelined CONNECTs (docs/protocol.md §5.3): server-chosen
    /// port ids, DATA before DONE. Off (`--no-pipelined-connect`): it answers as a mediator older than
    /// that rule did, and the server falls back to CONNECT with port id 0.
    public var pipelinedConnects = true
    public var softwareVersion: String
    /// TUN mode, if the operator allows it (`--tun`); nil: off, the server's TUN requests are refused.
    public var tun: MediatorTunSettings?

    public init(
        serverHost: String, serverPort: Int, name: String, secret: [UInt8], policy: Policy,
        settings: SessionSettings = SessionSettings(), transport: ClientTransport = PlainTransport(),
        softwareVersion: String
    ) {
        self.serverHost = serverHost
        self.serverPort = serverPort
        self.name = name
        self.secret = secret
        self.policy = policy
        self.settings = settings
        self.transport = transport
        self.softwareVersion = softwareVersion
    }
}
