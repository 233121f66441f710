import CMNL
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// One entry of the kernel's neighbour table (`ip neigh show`): an IPv4 (ARP) or IPv6 (NDP) address
/// on an interface, its state and, once resolved, the hardware address that answered for it. Read by
/// `NeighbourProbe` to see whether a LAN host already uses an address.
struct NeighbourMessage: Hashable, Sendable {
    var interfaceIndex: UInt32
    var address: IPAddress
    /// NUD_* bits.
    var state: UInt16
    var linkAddress: [UInt8]

    static let request = NetlinkSocket.DumpRequest(
        name: "RTM_GETNEIGH", messageType: UInt16(RTM_GETNEIGH), headerSize: MemoryLayout<ndmsg>.size,
        family: UInt8(AF_UNSPEC), replyType: UInt16(RTM_NEWNEIGH))

    var isPermanent: Bool { state & UInt16(NUD_PERMANENT) != 0 }

    /// Nil for a reply without a usable NDA_DST, or a proxy entry (never a crash).
    init?(_ message: NetlinkMessage) throws {
        let decoded = try message.withPayload(ndmsg.self, request: Self.request.name) { header, attributes -> NeighbourMessage? in
            guard header.ndm_flags & UInt8(NTF_PROXY) == 0, let bytes = attributes.bytes(NDA_DST),
                let address = IPAddress(bytes: bytes)
            else { return nil }
            return NeighbourMessage(
                interfaceIndex: UInt32(bitPattern: header.ndm_ifindex), address: address, state: header.ndm_state,
                linkAddress: attributes.bytes(NDA_LLADDR) ?? [])
        }
        guard let decoded else { return nil }
        self = decoded
    }

    init(interfaceIndex: UInt32, address: IPAddress, state: UInt16, linkAddress: [UInt8]) {
        self.interfaceIndex = interfaceIndex
        self.address = address
        self.state = state
        self.linkAddress = linkAddress
    }

    /// Whether a host answered for the address just now: reachable, with a hardware address.
    var isReachable: Bool { state & UInt16(NUD_REACHABLE) != 0 && !linkAddress.isEmpty }

    static func all() throws -> [NeighbourMessage] {
        try NetlinkSocket.dump(request).compactMap { try NeighbourMessage($0) }
    }
}
