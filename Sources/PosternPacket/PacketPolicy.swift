import NIOCore
import PosternWire

/// Which IP packets TUN mode carries (docs/protocol.md §10, DESIGN.md "Security stance"): between the
/// remote side's addresses (one per family) and the LAN prefixes the mediator allows, nothing else.
/// Both ends apply it: the mediator because it is the LAN's guard, the server so that it never sends
/// what the mediator would drop. Pure; IPv4 and IPv6 (an IPv6 packet is only carried when the remote
/// side has an IPv6 address: otherwise it is `unsupported`).
public struct PacketPolicy: Hashable, Sendable {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    /// The remote side's addresses on the LAN (what LAN hosts see as the user's address): at most one
    /// per family.
    public var remoteAddresses: [IPAddress]
    /// The LAN prefixes packets may reach and come from.
    public var prefixes: [Prefix]
    /// The largest packet carried (the tun devices' MTU).
    public var mtu: Int

    /// The first remote address (IPv4 when there is one).
    public var remoteAddress: IPAddress { remoteAddresses[0] }

    public init(remoteAddress: IPAddress, prefixes: [Prefix], mtu: Int) {
        self.init(remoteAddresses: [remoteAddress], prefixes: prefixes, mtu: mtu)
    }

    public init(remoteAddresses: [IPAddress], prefixes: [Prefix], mtu: Int) {
        precondition(!remoteAddresses.isEmpty)
        self.remoteAddresses = remoteAddresses
        self.prefixes = prefixes
        self.mtu = mtu
    }

    /// Why a packet was not carried.
    public enum Drop: String, Hashable, Sendable, CaseIterable {
        /// Not a parseable IP packet, or a bad IPv4 header checksum.
        case malformed
        /// An IP version the remote side has no address of (IPv6 without `--tun` for IPv6), or another
        /// version.
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
            guard remoteAddresses.contains(p.source) else { return .source }
            guard allows(p.destination) else { return .destination }
            return nil
        }
    }

    /// A packet from the LAN to the remote side: from an allowed prefix to the remote address.
    public func checkFromLAN(_ packet: ByteBuffer) -> Drop? {
        check(packet) { p in
            guard remoteAddresses.contains(p.destination) else { return .destination }
            guard allows(p.source) else { return .source }
            return nil
        }
    }

    public func allows(_ address: IPAddress) -> Bool { prefixes.contains { $0.contains(address) } }

    /// Whether the remote side has an address of this packet's family.
    private func carries(_ version: IPPacket.Version) -> Bool {
        remoteAddresses.contains { $0.isIPv6 == (version == .v6) }
    }

    private func check(_ packet: ByteBuffer, _ addresses: (IPPacket) -> Drop?) -> Drop? {
        guard packet.readableBytes <= mtu else { return .tooLarge }
        let first = packet.getInteger(at: packet.readerIndex, as: UInt8.self)
        if let first, first >> 4 == 6, !carries(.v6) { return .unsupported }
        guard let parsed = try? IPPacket(parsing: packet) else { return .malformed }
        guard carries(parsed.version) else { return .unsupported }
        if parsed.version == .v4 {
            guard InternetChecksum.isValidIPv4Header(packet, headerLength: parsed.headerLength) else { return .malformed }
        }
        return addresses(parsed)
    }
}
