import NIOCore

/// What a UDP channel datagram carries once opened (docs/protocol.md §9.3): a type byte, then the
/// type's fields. Keepalives measure the channel and keep its NAT mapping; DATAGRAM is the UDP channel's
/// form of the TCP channel's DATAGRAM frame (§6.2); PACKET carries one IP packet of TUN mode (§10).
public enum UDPChannelMessage: Hashable, Sendable {
    /// A keepalive. `timestamp` is opaque to the receiver, who echoes it in PONG (the sender's clock,
    /// for the round-trip time); `receiving` says whether the sender has heard this channel lately,
    /// so each end learns whether its own datagrams get through.
    case ping(timestamp: UInt64, receiving: Bool)
    /// The answer to a PING, echoing its timestamp.
    case pong(echo: UInt64)
    /// One datagram of a UDP port, as DATAGRAM (§6.2): the LAN peer is the sender (M→S) or the
    /// destination (S→M).
    case datagram(portID: UInt32, peer: Endpoint, bytes: ByteBuffer)
    /// One raw IP packet of TUN mode (§10), the UDP channel's form of the PACKET frame.
    case packet(ByteBuffer)

    public static let pingType: UInt8 = 0x01
    public static let pongType: UInt8 = 0x02
    public static let datagramType: UInt8 = 0x03
    public static let packetType: UInt8 = 0x04

    public var type: UInt8 {
        switch self {
        case .ping: return Self.pingType
        case .pong: return Self.pongType
        case .datagram: return Self.datagramType
        case .packet: return Self.packetType
        }
    }

    public var name: String { Self.name(of: type) }

    public static func name(of type: UInt8) -> String {
        switch type {
        case pingType: return "PING"
        case pongType: return "PONG"
        case datagramType: return "DATAGRAM"
        case packetType: return "PACKET"
        default: return "0x" + String(type, radix: 16)
        }
    }

    /// Bytes this message takes before sealing.
    public var encodedLength: Int {
        switch self {
        case .ping: return 1 + 8 + 1
        case .pong: return 1 + 8
        case .datagram(_, let peer, let bytes): return Self.datagramPrefixLength(for: peer) + bytes.readableBytes
        case .packet(let bytes): return 1 + bytes.readableBytes
        }
    }

    /// Type, port id and peer: what a DATAGRAM adds to its data.
    public static func datagramPrefixLength(for peer: Endpoint) -> Int {
        let address: Int
        switch peer.host {
        case .ip(.v4): address = 1 + 4
        case .ip(.v6): address = 1 + 16
        case .name(let n): address = 2 + min(n.utf8.count, 255)
        }
        return 1 + 4 + address + 2
    }

    /// The largest datagram to or from `peer` that fits one UDP channel datagram: the UDP limit less
    /// the header, the tag and the DATAGRAM fields (65,459 bytes for an IPv4 peer, 65,447 for IPv6).
    public static func maxDatagramBytes(for peer: Endpoint) -> Int {
        UDPChannelHeader.maxDatagramSize - UDPChannelHeader.overhead - datagramPrefixLength(for: peer)
    }
}
