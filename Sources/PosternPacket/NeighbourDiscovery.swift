import NIOCore
import PosternWire

/// IPv6 neighbour discovery (RFC 4861) for the raw LAN presence (issue 11): the neighbour
/// solicitations and advertisements that take ARP's place on IPv6, in their Ethernet frames. Pure:
/// frames in, values and frames out.
///
/// Only messages whose ICMPv6 header follows the fixed IPv6 header directly are understood (next
/// header 58): NDP never needs extension headers, and the kernel's filter looks at that offset too.
/// A message must arrive with hop limit 255 (RFC 4861 §7.1.1: proof it was not forwarded by a
/// router), code 0, a valid checksum over the pseudo-header, options of non-zero length that fit,
/// and a target that is not multicast; anything else is rejected.
public struct NeighbourDiscovery: Hashable, Sendable {
    public enum Kind: UInt8, Hashable, Sendable {
        case solicitation = 135
        case advertisement = 136
    }

    public enum ParseError: Error, Hashable, Sendable {
        case tooShort(Int)
        case notIPv6ICMP
        case hopLimit(UInt8)
        case notNeighbourDiscovery(type: UInt8, code: UInt8)
        case badChecksum
        case badOption
        case multicastTarget
        case badSourceMAC
    }

    public static let etherType: UInt16 = 0x86dd
    public static let nextHeader: UInt8 = 58
    /// Router 0x80, solicited 0x40, override 0x20: the first byte of an advertisement's flags.
    public static let solicitedFlag: UInt8 = 0x40
    public static let overrideFlag: UInt8 = 0x20
    /// ff02::1, every node on the link: where an unsolicited advertisement goes.
    public static let allNodes = IPAddress.v6([0xff, 0x02] + [UInt8](repeating: 0, count: 13) + [1])

    public var kind: Kind
    /// The frame's Ethernet source.
    public var sourceMAC: [UInt8]
    public var source: IPAddress
    public var destination: IPAddress
    public var target: IPAddress
    /// The flags byte of an advertisement (0 in a solicitation).
    public var flags: UInt8
    /// The source (solicitation) or target (advertisement) link-layer address option, if present.
    public var linkLayerAddress: [UInt8]?

    public init(
        kind: Kind, sourceMAC: [UInt8], source: IPAddress, destination: IPAddress, target: IPAddress, flags: UInt8 = 0,
        linkLayerAddress: [UInt8]?
    ) {
        self.kind = kind
        self.sourceMAC = sourceMAC
        self.source = source
        self.destination = destination
        self.target = target
        self.flags = flags
        self.linkLayerAddress = linkLayerAddress
    }

    /// Whether `frame` (from its Ethernet header) is IPv6 carrying ICMPv6 type 135 or 136 right after
    /// the fixed header: a frame the presence must parse as NDP, not deliver.
    public static func isNeighbourDiscovery(_ frame: [UInt8]) -> Bool {
        frame.count >= 55 && frame[12] == 0x86 && frame[13] == 0xdd && frame[20] == nextHeader
            && (frame[54] == Kind.solicitation.rawValue || frame[54] == Kind.advertisement.rawValue)
    }

    /// Parses an Ethernet frame holding a neighbour solicitation or advertisement. Padding after the
    /// IPv6 payload length is ignored.
    public init(frame: [UInt8]) throws(ParseError) {
        guard frame.count >= 14 + 40 + 24 else { throw .tooShort(frame.count) }
        guard frame[12] == 0x86, frame[13] == 0xdd, frame[14] >> 4 == 6, frame[20] == Self.nextHeader else { throw .notIPv6ICMP }
        let payload = Int(frame[18]) << 8 | Int(frame[19])
        guard payload >= 24, 14 + 40 + payload <= frame.count else { throw .tooShort(frame.count) }
        guard frame[21] == 255 else { throw .hopLimit(frame[21]) }
        guard let kind = Kind(rawValue: frame[54]), frame[55] == 0 else {
            throw .notNeighbourDiscovery(type: frame[54], code: frame[55])
        }
        let message = Array(frame[14..<(54 + payload)])
        guard Self.checksum(message) == 0 else { throw .badChecksum }
        let sourceMAC = Array(frame[6..<12])
        guard ARPPacket.isUnicast(sourceMAC) else { throw .badSourceMAC }
        let target = Array(message[48..<64])
        guard target[0] != 0xff else { throw .multicastTarget }
        var option: [UInt8]?
        var at = 64
        let wanted: UInt8 = kind == .solicitation ? 1 : 2
        while at < message.count {
            guard at + 2 <= message.count, message[at + 1] > 0, at + Int(message[at + 1]) * 8 <= message.count else {
                throw .badOption
            }
            let length = Int(message[at + 1]) * 8
            if message[at] == wanted, length == 8 { option = Array(message[(at + 2)..<(at + 8)]) }
            at += length
        }
        self.init(
            kind: kind, sourceMAC: sourceMAC, source: .v6(Array(message[8..<24])), destination: .v6(Array(message[24..<40])),
            target: .v6(target), flags: kind == .advertisement ? message[44] : 0, linkLayerAddress: option)
    }

    /// The ICMPv6 checksum of `packet` (an IPv6 packet, next header 58 directly): 0 when the stored one is right.
    static func checksum(_ packet: [UInt8]) -> UInt16 {
        TransportChecksum.ipv6(ByteBuffer(bytes: packet), ipBase: 0, upperLayer: 40, length: packet.count - 40, nextHeader: nextHeader)
    }

    /// This message as an Ethernet frame from `sourceMAC` to `destinationMAC`, hop limit 255, with
    /// its checksum.
    public func frame(to destinationMAC: [UInt8]) -> [UInt8] {
        var icmp: [UInt8] = [kind.rawValue, 0, 0, 0, flags, 0, 0, 0] + target.bytes
        if let linkLayerAddress {
            icmp += [kind == .solicitation ? 1 : 2, 1] + linkLayerAddress
        }
        var packet: [UInt8] = [0x60, 0, 0, 0, UInt8(icmp.count >> 8), UInt8(icmp.count & 0xff), Self.nextHeader, 255]
        packet += source.bytes + destination.bytes + icmp
        let sum = Self.checksum(packet)
        packet[42] = UInt8(sum >> 8)
        packet[43] = UInt8(sum & 0xff)
        return destinationMAC + sourceMAC + [0x86, 0xdd] + packet
    }

    /// The advertisement the owner of `address` at `mac` answers this solicitation with, or nil when
    /// it is not a solicitation for `address` (or our own coming back). A solicitation from the
    /// unspecified address (duplicate address detection) is answered to all nodes, unsolicited
    /// (RFC 4861 §7.2.4), so the prober hears that the address is taken.
    public func answer(for address: IPAddress, mac: [UInt8]) -> [UInt8]? {
        guard kind == .solicitation, target == address, sourceMAC != mac else { return nil }
        if source.isUnspecified {
            return Self.announcement(of: address, mac: mac)
        }
        let destinationMAC = linkLayerAddress ?? sourceMAC
        return NeighbourDiscovery(
            kind: .advertisement, sourceMAC: mac, source: address, destination: source, target: address,
            flags: Self.solicitedFlag | Self.overrideFlag, linkLayerAddress: mac
        ).frame(to: destinationMAC)
    }

    /// An unsolicited advertisement of `address` at `mac` to all nodes (override set), the IPv6 form
    /// of a gratuitous ARP (RFC 4861 §7.2.6).
    public static func announcement(of address: IPAddress, mac: [UInt8]) -> [UInt8] {
        NeighbourDiscovery(
            kind: .advertisement, sourceMAC: mac, source: address, destination: allNodes, target: address,
            flags: overrideFlag, linkLayerAddress: mac
        ).frame(to: multicastMAC(allNodes))
    }

    /// A solicitation for `target` from `address` at `mac`: to its solicited-node multicast address
    /// to resolve it, or unicast to `unicastMAC` to confirm it.
    public static func solicitation(for target: IPAddress, from address: IPAddress, mac: [UInt8], unicastMAC: [UInt8]? = nil)
        -> [UInt8]
    {
        let destination = unicastMAC == nil ? solicitedNode(target) : target
        return NeighbourDiscovery(
            kind: .solicitation, sourceMAC: mac, source: address, destination: destination, target: target,
            linkLayerAddress: mac
        ).frame(to: unicastMAC ?? multicastMAC(destination))
    }

    /// ff02::1:ffXX:XXXX, the solicited-node multicast address of `address` (RFC 4291 §2.7.1).
    public static func solicitedNode(_ address: IPAddress) -> IPAddress {
        let b = address.bytes
        return .v6([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, b[13], b[14], b[15]])
    }

    /// 33:33 and the address's last four bytes: the Ethernet group an IPv6 multicast address maps to (RFC 2464 §7).
    public static func multicastMAC(_ address: IPAddress) -> [UInt8] {
        [0x33, 0x33] + address.bytes.suffix(4)
    }

    /// ICMPv6 "destination unreachable" (RFC 4443 §3.1, type 1) about `packet` from `router`, code 3
    /// (address unreachable: no neighbour answered) or 0 (no route). nil when no error may be sent
    /// (the rules of `ICMPv6PacketTooBig`).
    public static func unreachable(for packet: ByteBuffer, code: UInt8, from router: IPAddress) -> ByteBuffer? {
        guard let parsed = try? IPPacket(parsing: packet), parsed.version == .v6, router.isIPv6 else { return nil }
        let base = packet.readerIndex
        let source = packet.getBytes(at: base + 8, length: 16)!
        let destination = packet.getBytes(at: base + 24, length: 16)!
        guard ICMPv6PacketTooBig.isUnicastHost(source), ICMPv6PacketTooBig.isUnicastHost(destination) else { return nil }
        if parsed.transportProtocol == nextHeader {
            guard parsed.totalLength > 40, let type = packet.getInteger(at: base + 40, as: UInt8.self), type >= 128 else { return nil }
        }
        let quoted = packet.getBytes(at: base, length: min(parsed.totalLength, ICMPv6PacketTooBig.minimumMTU - 48))!
        var out: [UInt8] = [0x60, 0, 0, 0, UInt8((8 + quoted.count) >> 8), UInt8((8 + quoted.count) & 0xff), nextHeader, 64]
        out += router.bytes + source + [1, code, 0, 0, 0, 0, 0, 0] + quoted
        let sum = checksum(out)
        out[42] = UInt8(sum >> 8)
        out[43] = UInt8(sum & 0xff)
        return ByteBuffer(bytes: out)
    }
}
