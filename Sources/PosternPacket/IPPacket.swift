import NIOCore
import PosternWire

/// The addressing of one IP packet, read from its header without copying the packet. Parsing
/// validates every length it uses, so garbage is an error, never a crash.
public struct IPPacket: Hashable, Sendable {
    public enum Version: UInt8, Hashable, Sendable {
        case v4 = 4
        case v6 = 6
    }

    public var version: Version
    public var source: IPAddress
    public var destination: IPAddress
    /// IPv4's protocol field, or IPv6's first next-header (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    public var transportProtocol: UInt8
    /// Bytes of the fixed header (IPv4 with options: up to 60; IPv6: 40).
    public var headerLength: Int
    /// The packet's length by its header. Bytes after it (link padding) are not part of it.
    public var totalLength: Int

    public enum ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        case empty
        case unknownVersion(UInt8)
        /// Fewer bytes than the header says there are.
        case truncated(needed: Int, have: Int)
        /// IPv4 header length below 20 bytes, or a total length shorter than the header.
        case badLength(Int)

        public var description: String {
            switch self {
            case .empty: return "empty packet"
            case .unknownVersion(let v): return "IP version \(v) is neither 4 nor 6"
            case .truncated(let needed, let have): return "truncated packet: \(have) bytes of \(needed)"
            case .badLength(let n): return "impossible length \(n)"
            }
        }
    }

    static let ipv4MinimumHeader = 20
    static let ipv6Header = 40

    /// Reads the header at the buffer's reader index; the buffer itself is not moved.
    public init(parsing packet: ByteBuffer) throws {
        let have = packet.readableBytes
        guard let first = packet.getInteger(at: packet.readerIndex, as: UInt8.self) else { throw ParseError.empty }
        let start = packet.readerIndex
        switch first >> 4 {
        case 4:
            guard have >= Self.ipv4MinimumHeader else { throw ParseError.truncated(needed: Self.ipv4MinimumHeader, have: have) }
            let header = Int(first & 0x0f) * 4
            guard header >= Self.ipv4MinimumHeader else { throw ParseError.badLength(header) }
            guard have >= header else { throw ParseError.truncated(needed: header, have: have) }
            let total = Int(packet.getInteger(at: start + 2, as: UInt16.self)!)
            guard total >= header else { throw ParseError.badLength(total) }
            guard have >= total else { throw ParseError.truncated(needed: total, have: have) }
            version = .v4
            headerLength = header
            totalLength = total
            transportProtocol = packet.getInteger(at: start + 9, as: UInt8.self)!
            // Read as integers: no array per address on the per-packet path of TUN mode.
            source = .v4(packet.getInteger(at: start + 12, as: UInt32.self)!)
            destination = .v4(packet.getInteger(at: start + 16, as: UInt32.self)!)
        case 6:
            guard have >= Self.ipv6Header else { throw ParseError.truncated(needed: Self.ipv6Header, have: have) }
            let total = Self.ipv6Header + Int(packet.getInteger(at: start + 4, as: UInt16.self)!)
            guard have >= total else { throw ParseError.truncated(needed: total, have: have) }
            version = .v6
            headerLength = Self.ipv6Header
            totalLength = total
            transportProtocol = packet.getInteger(at: start + 6, as: UInt8.self)!
            source = IPAddress(bytes: packet.getBytes(at: start + 8, length: 16)!)!
            destination = IPAddress(bytes: packet.getBytes(at: start + 24, length: 16)!)!
        default:
            throw ParseError.unknownVersion(first >> 4)
        }
    }
}
