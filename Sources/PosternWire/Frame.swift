import NIOCore

/// Every message of the Postern tunnel protocol (docs/protocol.md §3). One case per frame type; the
/// payload types are nested in this enum and each carries its `static let type` code.
///
/// Frames are length-prefixed: `length u32 | type u8 | flags u8 | payload[length]` (§2).
public enum Frame: Hashable, Sendable {
    // Session (§4)
    case hello(Hello)
    case challenge(Challenge)
    case authenticate(Authenticate)
    case welcome(Welcome)
    case refused(Refused)
    case environment(MediatorEnvironment)
    case ping(Ping)
    case pong(Ping)
    case goAway(GoAway)
    // Requests, server to mediator (§5)
    case open(Open)
    case redirect(Redirect)
    case connect(Connect)
    case listen(Listen)
    case close(Close)
    // Answers, mediator to server (§5)
    case done(Done)
    case failed(Failed)
    // Relay and events (§6)
    case data(Data)
    case datagram(Datagram)
    case window(Window)
    case accepted(Accepted)
    case finished(Finished)
    case reset(Reset)
    // TUN mode (§10): additive, sent only to a peer that announced it
    case tun(Tun)
    case tunReady(TunReady)
    case packet(Packet)
    case tunStats(TunStats)
    case tunClose(TunClose)
    // Datagram denial reports (§6.5): additive, sent only to a server whose OPEN asked for them
    case denied(Denied)
    // ICMP echo (§11): additive, sent only to a peer that announced it
    case echo(Echo)
    case echoReply(EchoReply)

    /// The type code on the wire.
    public var type: UInt8 {
        switch self {
        case .hello: return Hello.type
        case .challenge: return Challenge.type
        case .authenticate: return Authenticate.type
        case .welcome: return Welcome.type
        case .refused: return Refused.type
        case .environment: return MediatorEnvironment.type
        case .ping: return Ping.pingType
        case .pong: return Ping.pongType
        case .goAway: return GoAway.type
        case .open: return Open.type
        case .redirect: return Redirect.type
        case .connect: return Connect.type
        case .listen: return Listen.type
        case .close: return Close.type
        case .done: return Done.type
        case .failed: return Failed.type
        case .data: return Data.type
        case .datagram: return Datagram.type
        case .window: return Window.type
        case .accepted: return Accepted.type
        case .finished: return Finished.type
        case .reset: return Reset.type
        case .tun: return Tun.type
        case .tunReady: return TunReady.type
        case .packet: return Packet.type
        case .tunStats: return TunStats.type
        case .tunClose: return TunClose.type
        case .denied: return Denied.type
        case .echo: return Echo.type
        case .echoReply: return EchoReply.type
        }
    }

    /// Protocol version spoken by this build (§1). Bumped on any incompatible change.
    public static let protocolVersion: UInt16 = 1
    /// Bytes before the payload: length (4), type (1), flags (1).
    public static let headerLength = 6
    /// Every type code this version understands (§3).
    public static let knownTypes: Set<UInt8> = [
        Hello.type, Challenge.type, Authenticate.type, Welcome.type, Refused.type, MediatorEnvironment.type,
        Ping.pingType, Ping.pongType, GoAway.type, Open.type, Redirect.type, Connect.type, Listen.type,
        Close.type, Done.type, Failed.type, Data.type, Datagram.type, Window.type, Accepted.type,
        Finished.type, Reset.type, Tun.type, TunReady.type, Packet.type,
        Echo.type, EchoReply.type, TunStats.type, TunClose.type, Denied.type,
    ]
    /// The first bytes of every HELLO payload; lets the server reject stray traffic at once.
    public static let magic: [UInt8] = Array("PSTN".utf8)

    // MARK: - Session

    /// Mediator to server, first frame of a connection.
    public struct Hello: Hashable, Sendable {
        public static let type: UInt8 = 0x01
        public var version: UInt16
        public var name: String
        public var softwareVersion: String
        /// 32 random bytes, mixed into both proofs so neither side can replay an old exchange.
        public var nonce: [UInt8]
        /// Bytes the mediator accepts per port before it grants more with WINDOW (§6.3).
        public var initialWindow: UInt32
        /// Largest payload the mediator accepts in one frame.
        public var maxPayload: UInt32
        public init(
            version: UInt16 = Frame.protocolVersion, name: String, softwareVersion: String, nonce: [UInt8],
            initialWindow: UInt32, maxPayload: UInt32
        ) {
            self.version = version
            self.name = name
            self.softwareVersion = softwareVersion
            self.nonce = nonce
            self.initialWindow = initialWindow
            self.maxPayload = maxPayload
        }
    }

    /// Server to mediator: the server's nonce to prove knowledge of the secret against.
    public struct Challenge: Hashable, Sendable {
        public static let type: UInt8 = 0x02
        public var version: UInt16
        public var nonce: [UInt8]
        public init(version: UInt16 = Frame.protocolVersion, nonce: [UInt8]) {
            self.version = version
            self.nonce = nonce
        }
    }

    /// Mediator to server: HMAC-SHA256 proof (§4.2).
    public struct Authenticate: Hashable, Sendable {
        public static let type: UInt8 = 0x03
        public var proof: [UInt8]
        public init(proof: [UInt8]) { self.proof = proof }
    }

    /// Server to mediator: the session is established. Carries the server's own proof so a mediator
    /// never talks to a server that does not know the secret.
    public struct Welcome: Hashable, Sendable {
        public static let type: UInt8 = 0x04
        public var sessionID: UInt64
        public var proof: [UInt8]
        public var keepaliveIntervalMillis: UInt32
        public var deadTimeoutMillis: UInt32
        public var initialWindow: UInt32
        public var maxPayload: UInt32
        public init(
            sessionID: UInt64, proof: [UInt8], keepaliveIntervalMillis: UInt32, deadTimeoutMillis: UInt32,
            initialWindow: UInt32, maxPayload: UInt32
        ) {
            self.sessionID = sessionID
            self.proof = proof
            self.keepaliveIntervalMillis = keepaliveIntervalMillis
            self.deadTimeoutMillis = deadTimeoutMillis
            self.initialWindow = initialWindow
            self.maxPayload = maxPayload
        }
    }

    /// Either side, last frame before closing during the handshake.
    public struct Refused: Hashable, Sendable {
        public static let type: UInt8 = 0x05
        public var code: ErrorCode
        public var message: String
        public init(code: ErrorCode, message: String) {
            self.code = code
            self.message = message
        }
    }

    /// Keepalive probe and its answer carry the same opaque token.
    public struct Ping: Hashable, Sendable {
        public static let pingType: UInt8 = 0x07
        public static let pongType: UInt8 = 0x08
        public var token: UInt64
        public init(token: UInt64) { self.token = token }
    }

    /// Either side, last frame of an established session: why it ends.
    public struct GoAway: Hashable, Sendable {
        public static let type: UInt8 = 0x09
        public var code: ErrorCode
        public var message: String
        public init(code: ErrorCode, message: String) {
            self.code = code
            self.message = message
        }
    }

    // MARK: - Requests and answers

    public enum Transport: UInt8, Hashable, Sendable, CustomStringConvertible {
        case tcp = 6
        case udp = 17
        public var description: String { self == .tcp ? "tcp" : "udp" }
    }

    /// Open a port on the mediator: bind `address:port` (§5.1).
    public struct Open: Hashable, Sendable {
        public static let type: UInt8 = 0x10
        public var requestID: UInt32
        public var transport: Transport
        /// true: this port or fail; false: the first free port from `port` upwards.
        public var exact: Bool
        public var address: IPAddress
        public var port: UInt16
        /// The flags byte after the port (§5.1), only to a mediator with `Capabilities.deniedReports`;
        /// nil: the original OPEN.
        public var flags: Flags?
        public init(requestID: UInt32, transport: Transport, exact: Bool, address: IPAddress, port: UInt16, flags: Flags? = nil) {
            self.requestID = requestID
            self.transport = transport
            self.exact = exact
            self.address = address
            self.port = port
            self.flags = flags
        }

        /// What the server asks of the port beyond the original OPEN. Unknown bits are ignored.
        public struct Flags: OptionSet, Hashable, Sendable {
            public let rawValue: UInt8
            public init(rawValue: UInt8) { self.rawValue = rawValue }
            /// UDP: the mediator reports the server's datagrams its policy dropped with DENIED (§6.5).
            public static let reportDenied = Flags(rawValue: 1 << 0)
        }
    }

    /// Open a UDP port whose datagrams travel a UDP channel (§5.2; carried since protocol v1,
    /// executed once UDP channels exist).
    public struct Redirect: Hashable, Sendable {
        public static let type: UInt8 = 0x11
        public var requestID: UInt32
        public var exact: Bool
        public var address: IPAddress
        public var port: UInt16
        public init(requestID: UInt32, exact: Bool, address: IPAddress, port: UInt16) {
            self.requestID = requestID
            self.exact = exact
            self.address = address
            self.port = port
        }
    }

    /// Connect an opened TCP port; port 0 opens an ephemeral port first, saving a round trip (§5.3).
    public struct Connect: Hashable, Sendable {
        public static let type: UInt8 = 0x12
        public var requestID: UInt32
        public var portID: UInt32
        public var destination: Endpoint
        public init(requestID: UInt32, portID: UInt32, destination: Endpoint) {
            self.requestID = requestID
            self.portID = portID
            self.destination = destination
        }
    }

    /// Make an opened TCP port a server (§5.4).
    public struct Listen: Hashable, Sendable {
        public static let type: UInt8 = 0x13
        public var requestID: UInt32
        public var portID: UInt32
        public var backlog: UInt16
        public init(requestID: UInt32, portID: UInt32, backlog: UInt16) {
            self.requestID = requestID
            self.portID = portID
            self.backlog = backlog
        }
    }

    public struct Close: Hashable, Sendable {
        public static let type: UInt8 = 0x14
        public var requestID: UInt32
        public var portID: UInt32
        public init(requestID: UInt32, portID: UInt32) {
            self.requestID = requestID
            self.portID = portID
        }
    }

    /// Success answer to any request: the port concerned and its local address.
    public struct Done: Hashable, Sendable {
        public static let type: UInt8 = 0x18
        public var requestID: UInt32
        public var portID: UInt32
        public var local: Endpoint
        public init(requestID: UInt32, portID: UInt32, local: Endpoint) {
            self.requestID = requestID
            self.portID = portID
            self.local = local
        }
    }

    /// Error answer: a Postern code, the errno behind it (0 if none) and a message.
    public struct Failed: Hashable, Sendable {
        public static let type: UInt8 = 0x19
        public var requestID: UInt32
        public var code: ErrorCode
        public var errno: Int32
        public var message: String
        public init(requestID: UInt32, code: ErrorCode, errno: Int32, message: String) {
            self.requestID = requestID
            self.code = code
            self.errno = errno
            self.message = message
        }
    }

    // MARK: - Relay

    /// Stream bytes for a TCP port, either direction. Counts against the receiver's window.
    public struct Data: Hashable, Sendable {
        public static let type: UInt8 = 0x20
        /// Bytes before the data: the port id.
        public static let prefixLength = 4
        public var portID: UInt32
        public var bytes: ByteBuffer
        public init(portID: UInt32, bytes: ByteBuffer) {
            self.portID = portID
            self.bytes = bytes
        }
    }

    /// One UDP datagram. Mediator to server: `peer` is the sender; server to mediator: the destination.
    public struct Datagram: Hashable, Sendable {
        public static let type: UInt8 = 0x21
        public var portID: UInt32
        public var peer: Endpoint
        public var bytes: ByteBuffer
        public init(portID: UInt32, peer: Endpoint, bytes: ByteBuffer) {
            self.portID = portID
            self.peer = peer
            self.bytes = bytes
        }
    }

    /// The receiver has consumed `increment` more bytes of a port: the sender may send that many more.
    public struct Window: Hashable, Sendable {
        public static let type: UInt8 = 0x22
        public var portID: UInt32
        public var increment: UInt32
        public init(portID: UInt32, increment: UInt32) {
            self.portID = portID
            self.increment = increment
        }
    }

    /// A listening port accepted a connection, now port `portID`.
    public struct Accepted: Hashable, Sendable {
        public static let type: UInt8 = 0x23
        public var listenerID: UInt32
        public var portID: UInt32
        public var peer: Endpoint
        public init(listenerID: UInt32, portID: UInt32, peer: Endpoint) {
            self.listenerID = listenerID
            self.portID = portID
            self.peer = peer
        }
    }

    /// FIN: the sender will send no more data on this port; the other direction goes on.
    public struct Finished: Hashable, Sendable {
        public static let type: UInt8 = 0x24
        public var portID: UInt32
        public init(portID: UInt32) { self.portID = portID }
    }

    /// RST: the port is gone at once, unsent data discarded; the receiver resets its side too.
    public struct Reset: Hashable, Sendable {
        public static let type: UInt8 = 0x25
        public var portID: UInt32
        public var code: ErrorCode
        public init(portID: UInt32, code: ErrorCode) {
            self.portID = portID
            self.code = code
        }
    }
}

extension MediatorEnvironment {
    public static let type: UInt8 = 0x06
}

// MARK: - TUN mode (docs/protocol.md §10)

extension Frame {
    /// Server to mediator, only to a mediator whose ENVIRONMENT offers TUN mode
    /// (`Capabilities.tunOffered`): start relaying IP packets, with at most `mtu` bytes each.
    public struct Tun: Hashable, Sendable {
        public static let type: UInt8 = 0x15
        public var requestID: UInt32
        public var mtu: UInt16
        /// The flags byte (§10.1), only to a mediator with `Capabilities.tunExtensions`; nil: the
        /// original 6-byte TUN.
        public var flags: Flags?
        public init(requestID: UInt32, mtu: UInt16, flags: Flags? = nil) {
            self.requestID = requestID
            self.mtu = mtu
            self.flags = flags
        }

        /// What the server understands beyond the original TUN mode. Unknown bits are ignored.
        public struct Flags: OptionSet, Hashable, Sendable {
            public let rawValue: UInt8
            public init(rawValue: UInt8) { self.rawValue = rawValue }
            /// TUN_READY may carry a second address (IPv6 beside IPv4), and its address may be IPv6.
            public static let ipv6 = Flags(rawValue: 1 << 0)
            /// The mediator may send TUN_STATS.
            public static let stats = Flags(rawValue: 1 << 1)
            /// The mediator's TUN_STATS may end with its device's offload counters (`TunStats.Device`).
            public static let deviceStats = Flags(rawValue: 1 << 2)
        }
    }

    /// Mediator to server, the success answer to TUN: the remote side's address on the LAN (with the
    /// LAN's prefix length), the MTU both tun devices use, and the LAN prefixes the mediator's policy
    /// forwards packets to and from. Failure is FAILED, as for any request.
    public struct TunReady: Hashable, Sendable {
        public static let type: UInt8 = 0x1a
        /// The most prefixes one TUN_READY carries; a mediator configured with more is refused at start.
        public static let maxPrefixes = 64
        public var requestID: UInt32
        public var mtu: UInt16
        public var address: MediatorEnvironment.AddressPrefix
        public var prefixes: [MediatorEnvironment.AddressPrefix]
        /// The remote side's address of the other family (IPv6 beside IPv4), only after a TUN with the
        /// `ipv6` flag; written after the prefixes.
        public var secondAddress: MediatorEnvironment.AddressPrefix?
        public init(
            requestID: UInt32, mtu: UInt16, address: MediatorEnvironment.AddressPrefix, prefixes: [MediatorEnvironment.AddressPrefix],
            secondAddress: MediatorEnvironment.AddressPrefix? = nil
        ) {
            self.requestID = requestID
            self.mtu = mtu
            self.address = address
            self.prefixes = prefixes
            self.secondAddress = secondAddress
        }

        /// Every address of the remote side, in frame order.
        public var addresses: [MediatorEnvironment.AddressPrefix] { [address] + (secondAddress.map { [$0] } ?? []) }
    }

    /// Mediator to server, only after a TUN with the `stats` flag: what the mediator's end of TUN mode
    /// carried and dropped since TUN_READY (totals, not increments), so `ctl mediators` shows the
    /// LAN guard's own drops. Sent when they changed, at most every few seconds.
    public struct TunStats: Hashable, Sendable {
        public static let type: UInt8 = 0x29
        /// The most drop reasons one TUN_STATS carries.
        public static let maxReasons = 16
        /// The longest reason name, in bytes.
        public static let maxReasonLength = 32
        public var toLAN: UInt64
        public var fromLAN: UInt64
        /// ICMP "fragmentation needed" and ICMPv6 "packet too big" errors the mediator sent back.
        public var errorsSent: UInt64
        /// Drops by reason (`malformed`, `destination`, ...), in a stable order.
        public var dropped: [(reason: String, count: UInt64)]
        /// The mediator's tun device and its offloads, only after a TUN with the `deviceStats` flag and
        /// only from a mediator with a tun device (not with `--lan-presence raw`); written last.
        public var device: Device?
        public init(
            toLAN: UInt64, fromLAN: UInt64, errorsSent: UInt64, dropped: [(reason: String, count: UInt64)], device: Device? = nil
        ) {
            self.toLAN = toLAN
            self.fromLAN = fromLAN
            self.errorsSent = errorsSent
            self.dropped = dropped
            self.device = device
        }

        /// What the mediator's tun device did with its offloads (docs/protocol.md §10.5).
        public struct Device: Hashable, Sendable {
            /// Bytes on the wire: asked u8, offloads u32, three counters u64.
            public static let length = 29
            /// Whether the mediator asked for offloads at all (false: `--tun-offload off`).
            public var asked: Bool
            /// The `TUN_F_*` bits of linux/if_tun.h the kernel granted; 0: none, no virtio-net header.
            public var offloads: UInt32
            /// Super-packets read and cut into segments, writes that carried merged segments, and
            /// reads whose offload header did not fit their packet.
            public var superPacketsRead: UInt64
            public var coalescedWrites: UInt64
            public var offloadRefused: UInt64
            public init(asked: Bool, offloads: UInt32, superPacketsRead: UInt64, coalescedWrites: UInt64, offloadRefused: UInt64) {
                self.asked = asked
                self.offloads = offloads
                self.superPacketsRead = superPacketsRead
                self.coalescedWrites = coalescedWrites
                self.offloadRefused = offloadRefused
            }
        }

        public static func == (a: TunStats, b: TunStats) -> Bool {
            a.toLAN == b.toLAN && a.fromLAN == b.fromLAN && a.errorsSent == b.errorsSent
                && a.dropped.map(\.reason) == b.dropped.map(\.reason) && a.dropped.map(\.count) == b.dropped.map(\.count)
                && a.device == b.device
        }

        public func hash(into h: inout Hasher) {
            h.combine(toLAN)
            h.combine(fromLAN)
            h.combine(errorsSent)
            for d in dropped {
                h.combine(d.reason)
                h.combine(d.count)
            }
            h.combine(device)
        }
    }

    /// Server to mediator, only to a mediator with `Capabilities.tunExtensions`: end the TUN mode that
    /// TUN `requestID` started (the server refused it after TUN_READY, or stopped it), with why in
    /// words. The mediator undoes its configuration; the session goes on.
    public struct TunClose: Hashable, Sendable {
        public static let type: UInt8 = 0x2a
        public var requestID: UInt32
        public var message: String
        public init(requestID: UInt32, message: String) {
            self.requestID = requestID
            self.message = message
        }
    }

    /// Mediator to server, only for a UDP port whose OPEN had the `reportDenied` flag: `count` datagrams
    /// the server sent to that port were dropped by the mediator's policy (their destination is not
    /// allowed) since the previous DENIED for the port. At most one per port per
    /// `reportInterval` (§6.5), so a flood to a denied destination costs one frame a second.
    public struct Denied: Hashable, Sendable {
        public static let type: UInt8 = 0x2b
        /// The least time between two DENIED for one port.
        public static let reportIntervalMillis = 1000
        public var portID: UInt32
        /// Never 0 (a DENIED with count 0 is `invalidValue(field: "count")`).
        public var count: UInt32
        public init(portID: UInt32, count: UInt32) {
            self.portID = portID
            self.count = count
        }
    }

    /// Either way, once TUN mode is up: one raw IP packet, on the TCP channel while no UDP channel
    /// is up (the UDP channel's PACKET message otherwise, §9.3).
    public struct Packet: Hashable, Sendable {
        public static let type: UInt8 = 0x26
        public var bytes: ByteBuffer
        public init(bytes: ByteBuffer) { self.bytes = bytes }
    }
}
