import CMNL
import CPosternShims
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// One RTM_NEWROUTE reply, reduced to what the environment report needs: whether it is a default
/// route of the main table, and its next hops.
struct RouteMessage: Hashable, Sendable {
    struct Nexthop: Hashable, Sendable {
        /// nil for a directly connected (on-link) route.
        var gateway: IPAddress?
        var interfaceIndex: UInt32
    }

    var isIPv6: Bool
    var destinationLength: UInt8
    var table: UInt32
    /// RTN_UNICAST, RTN_UNREACHABLE, ...
    var type: UInt8
    var nexthops: [Nexthop]

    /// AF_UNSPEC dumps the IPv4 and IPv6 tables together.
    static let request = NetlinkSocket.DumpRequest(
        name: "RTM_GETROUTE", messageType: UInt16(RTM_GETROUTE), headerSize: MemoryLayout<rtmsg>.size,
        family: UInt8(AF_UNSPEC), replyType: UInt16(RTM_NEWROUTE))

    init(isIPv6: Bool, destinationLength: UInt8, table: UInt32, type: UInt8, nexthops: [Nexthop]) {
        self.isIPv6 = isIPv6
        self.destinationLength = destinationLength
        self.table = table
        self.type = type
        self.nexthops = nexthops
    }

    /// Returns nil for families other than IPv4 and IPv6 (e.g. MPLS, multicast routing tables).
    init?(_ message: NetlinkMessage) throws {
        let decoded = try message.withPayload(rtmsg.self, request: Self.request.name) {
            header, attributes -> RouteMessage? in
            let isIPv6: Bool
            switch Int32(header.rtm_family) {
            case AF_INET: isIPv6 = false
            case AF_INET6: isIPv6 = true
            default: return nil
            }
            // rtm_table is a byte; tables above 255 only appear in RTA_TABLE.
            let table = attributes.u32(RTA_TABLE.rawValue) ?? UInt32(header.rtm_table)
            var nexthops: [Nexthop] = []
            if attributes.contains(RTA_MULTIPATH.rawValue) {
                // ECMP routes carry their next hops in RTA_MULTIPATH instead of RTA_GATEWAY/RTA_OIF.
                nexthops =
                    try attributes.withPayload(RTA_MULTIPATH.rawValue) { try Self.multipath($0, isIPv6: isIPv6) } ?? []
            } else {
                let gateway = try Self.gateway(in: attributes, isIPv6: isIPv6)
                nexthops = [Nexthop(gateway: gateway, interfaceIndex: attributes.u32(RTA_OIF.rawValue) ?? 0)]
            }
            return RouteMessage(
                isIPv6: isIPv6, destinationLength: header.rtm_dst_len, table: table, type: header.rtm_type,
                nexthops: nexthops)
        }
        guard let decoded else { return nil }
        self = decoded
    }

    /// A unicast route of the main table with an empty destination prefix: where traffic goes by
    /// default. Unreachable/blackhole defaults and policy-routing tables are left out on purpose.
    var isDefault: Bool {
        destinationLength == 0 && table == RT_TABLE_MAIN.rawValue && type == RTN_UNICAST
    }

    /// One entry per next hop when this is a default route, otherwise none.
    var defaultRoutes: [MediatorEnvironment.Route] {
        guard isDefault else { return [] }
        let destination = MediatorEnvironment.AddressPrefix(address: isIPv6 ? .anyV6 : .anyV4, prefixLength: 0)
        return nexthops.map {
            MediatorEnvironment.Route(destination: destination, gateway: $0.gateway, interfaceIndex: $0.interfaceIndex)
        }
    }

    /// The next hop address: RTA_GATEWAY in the route's own family, or RTA_VIA (an IPv4 route
    /// through an IPv6 neighbour, RFC 5549), which carries its own family.
    private static func gateway(in attributes: NetlinkAttributes, isIPv6: Bool) throws -> IPAddress? {
        if let bytes = attributes.bytes(RTA_GATEWAY.rawValue) {
            guard bytes.count == (isIPv6 ? 16 : 4), let address = IPAddress(bytes: bytes) else {
                throw NetlinkError.malformedReply(request: request.name, detail: "RTA_GATEWAY of \(bytes.count) bytes")
            }
            return address
        }
        return attributes.withPayload(RTA_VIA.rawValue) { raw -> IPAddress? in
            // struct rtvia: a 16-bit family, then the address.
            guard raw.count >= 2 else { return nil }
            let family = Int32(raw.loadUnaligned(as: UInt16.self))
            let bytes = raw.dropFirst(2)
            switch family {
            case AF_INET where bytes.count == 4, AF_INET6 where bytes.count == 16:
                return IPAddress(bytes: bytes)
            default:
                return nil
            }
        } ?? nil
    }

    /// Walks the `struct rtnexthop` records of RTA_MULTIPATH, each followed by its own attributes.
    private static func multipath(_ raw: UnsafeRawBufferPointer, isIPv6: Bool) throws -> [Nexthop] {
        let recordHeader = MemoryLayout<rtnexthop>.size
        var nexthops: [Nexthop] = []
        var offset = 0
        while offset + recordHeader <= raw.count {
            let record = raw.loadUnaligned(fromByteOffset: offset, as: rtnexthop.self)
            let length = Int(record.rtnh_len)
            guard length >= recordHeader, offset + length <= raw.count else {
                throw NetlinkError.malformedReply(
                    request: request.name, detail: "RTA_MULTIPATH record of \(length) bytes at offset \(offset)")
            }
            let nested = UnsafeRawBufferPointer(rebasing: raw[(offset + recordHeader)..<(offset + length)])
            let address = try NetlinkAttributes.parse(payload: nested) { try Self.gateway(in: $0, isIPv6: isIPv6) }
            nexthops.append(Nexthop(gateway: address, interfaceIndex: UInt32(bitPattern: record.rtnh_ifindex)))
            offset += postern_rtnh_align(length)
        }
        return nexthops
    }
}
