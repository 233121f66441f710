import CMNL
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// One RTM_NEWADDR reply: an IPv4 or IPv6 address with its prefix, on an interface.
struct AddressMessage: Hashable, Sendable {
    var interfaceIndex: UInt32
    var prefix: MediatorEnvironment.AddressPrefix

    /// AF_UNSPEC asks for every family at once (IPv4 and IPv6 in one dump).
    static let request = NetlinkSocket.DumpRequest(
        name: "RTM_GETADDR", messageType: UInt16(RTM_GETADDR), headerSize: MemoryLayout<ifaddrmsg>.size,
        family: UInt8(AF_UNSPEC), replyType: UInt16(RTM_NEWADDR))

    init(interfaceIndex: UInt32, prefix: MediatorEnvironment.AddressPrefix) {
        self.interfaceIndex = interfaceIndex
        self.prefix = prefix
    }

    /// Returns nil for families other than IPv4 and IPv6 (the dump may carry others, e.g. DECnet, MPLS).
    init?(_ message: NetlinkMessage) throws {
        let decoded = try message.withPayload(ifaddrmsg.self, request: Self.request.name) {
            header, attributes -> (UInt32, MediatorEnvironment.AddressPrefix)? in
            let expectedLength: Int
            switch Int32(header.ifa_family) {
            case AF_INET: expectedLength = 4
            case AF_INET6: expectedLength = 16
            default: return nil
            }
            // On point-to-point links IFA_ADDRESS is the peer and IFA_LOCAL our own address, so
            // IFA_LOCAL wins when present (as in iproute2). Ordinary IPv6 addresses only carry
            // IFA_ADDRESS, which is then our own.
            guard let bytes = attributes.bytes(IFA_LOCAL) ?? attributes.bytes(IFA_ADDRESS) else {
                throw NetlinkError.malformedReply(
                    request: Self.request.name,
                    detail: "address on interface \(header.ifa_index) has no IFA_LOCAL or IFA_ADDRESS")
            }
            guard bytes.count == expectedLength, let address = IPAddress(bytes: bytes) else {
                throw NetlinkError.malformedReply(
                    request: Self.request.name,
                    detail:
                        "address on interface \(header.ifa_index) is \(bytes.count) bytes, expected \(expectedLength)")
            }
            return (
                header.ifa_index,
                MediatorEnvironment.AddressPrefix(address: address, prefixLength: header.ifa_prefixlen)
            )
        }
        guard let decoded else { return nil }
        (interfaceIndex, prefix) = decoded
    }
}
