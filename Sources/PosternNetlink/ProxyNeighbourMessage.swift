import CMNL
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// One proxy neighbour entry (`ip neigh show proxy`): the host answers ARP/NDP for `address` on the
/// interface. Read before TUN mode adds its own, because the kernel accepts a second add of an
/// existing proxy entry silently: without the check we would take over, and later delete, an entry
/// someone else made.
struct ProxyNeighbourMessage: Hashable, Sendable {
    var interfaceIndex: UInt32
    var address: IPAddress

    static let request = NetlinkSocket.DumpRequest(
        name: "RTM_GETNEIGH (proxy)", messageType: UInt16(RTM_GETNEIGH), headerSize: MemoryLayout<ndmsg>.size,
        family: UInt8(AF_UNSPEC), replyType: UInt16(RTM_NEWNEIGH),
        extraByte: (offset: MemoryLayout<ndmsg>.offset(of: \ndmsg.ndm_flags)!, value: UInt8(NTF_PROXY)))

    /// Nil for a reply without a usable NDA_DST (never a crash).
    init?(_ message: NetlinkMessage) throws {
        let decoded = try message.withPayload(ndmsg.self, request: Self.request.name) { header, attributes -> ProxyNeighbourMessage? in
            guard let bytes = attributes.bytes(NDA_DST), let address = IPAddress(bytes: bytes) else { return nil }
            return ProxyNeighbourMessage(interfaceIndex: UInt32(bitPattern: header.ndm_ifindex), address: address)
        }
        guard let decoded else { return nil }
        self = decoded
    }

    init(interfaceIndex: UInt32, address: IPAddress) {
        self.interfaceIndex = interfaceIndex
        self.address = address
    }

    /// Every proxy entry of the host (both families).
    static func all() throws -> [ProxyNeighbourMessage] {
        try NetlinkSocket.dump(request).compactMap { try ProxyNeighbourMessage($0) }
    }
}
