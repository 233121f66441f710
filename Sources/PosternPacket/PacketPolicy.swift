import NIOCore
import PosternWire

/// Which IP packets TUN mode carries (docs/protocol.md §10, DESIGN.md "Security stance"): between the
/// remote side's address and the LAN prefixes the mediator allows, nothing else. Both ends apply it:
/// the mediator because it is the LAN's guard, the server so that it never sends what the mediator
/// would drop. Pure; IPv4 only in this version (an IPv6 packet is dropped and counted).
public struct PacketPolicy: Hashable, Sendable {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    /// The remote side's address on the LAN (what LAN hosts see as the user's address).
    public var remoteAddress: IPAddress
    /// The LAN prefixes packets may reach and come from.
    public var prefixes: [Prefix]
    /// The largest packet carried (the tun devices' MTU).
    public var mtu: Int

    public init(remoteAddress: IPAddress, prefixes: [Prefix], mtu: Int) {
        self.remoteAddress = remoteAddress
        self.prefixes = prefixes
        self.mtu = mtu
    }

    /// Why a packet was not carried.
    public enum Drop: String, Hashable, Sendable, CaseIterable {
        /// Not a parseable IP packet, or a bad IPv4 header checksum.
        case malformed
        /// IPv6 (not carried yet) or another version.
        case unsupported
        /// Larger than the MTU.
        case tooLarge
        /// The source is not where this direction's packets may come from.
        case source
        /// The destination is not where this direction's packets may go.
        case destination
    }

    /// A packet from the remote side into the LAN: from the remote address to an allowed prefix.
    public func checkToLAN(_ packet: ByteBuffer) -> Drop? {
        check(packet) { p in
            guard p.source == remoteAddress else { return .source }
            guard allows(p.destination) else { return .destination }
            return nil
        }
    }

    /// A packet from the LAN to the remote side: from an allowed prefix to the remote address.
    public func checkFromLAN(_ packet: ByteBuffer) -> Drop? {
        check(packet) { p in
            guard p.destination == remoteAddress else { return .destination }
            guard allows(p.source) else { return .source }
            return nil
        }
    }

    public func allows(_ address: IPAddress) -> Bool { prefixes.contains { $0.contains(address) } }

    private func check(_ packet: ByteBuffer, _ addresses: (IPPacket) -> Drop?) -> Drop? {
        guard packet.readableBytes <= mtu else { return .tooLarge }
        guard let parsed = try? IPPacket(parsing: packet) else {
            if let first = packet.getInteger(at: packet.readerIndex, as: UInt8.self), first >> 4 == 6 { return .unsupported }
            return .malformed
        }
        guard parsed.version == .v4 else { return .unsupported }
        guard InternetChecksum.isValidIPv4Header(packet, headerLength: parsed.headerLength) else { return .malformed }
        return addresses(parsed)
    }
}
