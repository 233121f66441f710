/// The link-layer header types a capture may use (the LINKTYPE_/DLT_ values of pcap and pcapng), and
/// where the IP packet starts in a frame of each.
public enum LinkType: Hashable, Sendable, CustomStringConvertible {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order (DLT_NULL, 0).
    case null
    /// Ethernet II, with any number of 802.1Q / 802.1ad VLAN tags (1).
    case ethernet
    /// Raw IP, version from the first nibble (LINKTYPE_RAW 101; DLT_RAW 12 or 14 on some systems).
    case raw
    /// OpenBSD loopback: the 4-byte address family in network byte order (LINKTYPE_LOOP, 108).
    case loop
    /// Linux cooked capture v1, 16-byte header (113).
    case linuxSLL
    /// Raw IPv4 / raw IPv6 (228, 229).
    case ipv4
    case ipv6
    /// Linux cooked capture v2, 20-byte header (276).
    case linuxSLL2

    /// The link types this reader understands, by the number a capture file stores.
    public init?(rawValue: UInt32) {
        switch rawValue {
        case 0: self = .null
        case 1: self = .ethernet
        case 12, 14, 101: self = .raw
        case 108: self = .loop
        case 113: self = .linuxSLL
        case 228: self = .ipv4
        case 229: self = .ipv6
        case 276: self = .linuxSLL2
        default: return nil
        }
    }

    public var rawValue: UInt32 {
        switch self {
        case .null: return 0
        case .ethernet: return 1
        case .raw: return 101
        case .loop: return 108
        case .linuxSLL: return 113
        case .ipv4: return 228
        case .ipv6: return 229
        case .linuxSLL2: return 276
        }
    }

    public var description: String {
        switch self {
        case .null: return "BSD loopback"
        case .ethernet: return "Ethernet"
        case .raw: return "raw IP"
        case .loop: return "OpenBSD loopback"
        case .linuxSLL: return "Linux cooked v1"
        case .ipv4: return "raw IPv4"
        case .ipv6: return "raw IPv6"
        case .linuxSLL2: return "Linux cooked v2"
        }
    }

    public static let supportedText = "Ethernet (1), raw IP (101, 12, 14, 228, 229), Linux cooked v1 (113) and v2 (276), loopback (0, 108)"

    /// What a frame carries above its link layer.
    public enum Payload: Hashable, Sendable {
        /// An IP packet starting at this offset of the frame.
        case ip(offset: Int)
        /// Something else: ARP, LLDP, ... (the EtherType, or the address family for loopback).
        case other(UInt32)
    }

    public struct FrameError: Error, Hashable, Sendable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Finds the IP packet in a frame; an error when the frame is too short for its own header.
    public func payload(of frame: [UInt8]) throws(FrameError) -> Payload {
        func need(_ n: Int) throws(FrameError) {
            if frame.count < n {
                throw FrameError(reason: "\(description) frame of \(frame.count) bytes is shorter than its \(n)-byte header")
            }
        }
        func be16(_ at: Int) -> UInt32 { UInt32(frame[at]) << 8 | UInt32(frame[at + 1]) }
        func etherType(_ type: UInt32, at offset: Int) -> Payload {
            switch type {
            case 0x0800, 0x86dd: return .ip(offset: offset)
            default: return .other(type)
            }
        }
        switch self {
        case .raw, .ipv4, .ipv6:
            return .ip(offset: 0)
        case .null, .loop:
            try need(4)
            // Both byte orders: the capturing host's order is not recorded (AF_INET is 2; AF_INET6 is
            // 24, 28 or 30 depending on the BSD; Linux' 10).
            let little = UInt32(frame[0]) | UInt32(frame[1]) << 8 | UInt32(frame[2]) << 16 | UInt32(frame[3]) << 24
            let big = UInt32(frame[3]) | UInt32(frame[2]) << 8 | UInt32(frame[1]) << 16 | UInt32(frame[0]) << 24
            let family = (self == .loop) ? big : (little < 256 ? little : big)
            switch family {
            case 2, 10, 24, 28, 30: return .ip(offset: 4)
            default: return .other(family)
            }
        case .ethernet:
            try need(14)
            var offset = 12
            var type = be16(offset)
            // 802.1Q (0x8100), 802.1ad (0x88a8) and the old QinQ 0x9100: 4 bytes each.
            while type == 0x8100 || type == 0x88a8 || type == 0x9100 {
                offset += 4
                try need(offset + 2)
                type = be16(offset)
            }
            return etherType(type, at: offset + 2)
        case .linuxSLL:
            try need(16)
            return etherType(be16(14), at: 16)
        case .linuxSLL2:
            try need(20)
            return etherType(be16(0), at: 20)
        }
    }
}
