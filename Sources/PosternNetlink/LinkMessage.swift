import CMNL
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// One RTM_NEWLINK reply: an interface as the kernel describes it.
struct LinkMessage: Hashable, Sendable {
    var index: UInt32
    var name: String
    /// Empty when the interface has no hardware address (absent, zero-length or all zeros:
    /// loopback reports 00:00:00:00:00:00, tun none at all).
    var mac: [UInt8]
    var mtu: UInt32
    var isUp: Bool

    static let request = NetlinkSocket.DumpRequest(
        name: "RTM_GETLINK", messageType: UInt16(RTM_GETLINK), headerSize: MemoryLayout<ifinfomsg>.size,
        family: UInt8(AF_UNSPEC), replyType: UInt16(RTM_NEWLINK))

    init(index: UInt32, name: String, mac: [UInt8], mtu: UInt32, isUp: Bool) {
        self.index = index
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.isUp = isUp
    }

    init(_ message: NetlinkMessage) throws {
        (index, name, mac, mtu, isUp) = try message.withPayload(ifinfomsg.self, request: Self.request.name) {
            header, attributes in
            let index = UInt32(bitPattern: header.ifi_index)
            // The kernel always names an interface; a nameless one means we misread the message.
            guard let name = attributes.string(IFLA_IFNAME) else {
                throw NetlinkError.malformedReply(
                    request: Self.request.name, detail: "interface \(index) has no IFLA_IFNAME")
            }
            var mac = attributes.bytes(IFLA_ADDRESS) ?? []
            if mac.allSatisfy({ $0 == 0 }) { mac = [] }
            let mtu = attributes.u32(IFLA_MTU) ?? 0
            // IFF_UP is the administrative state (`ip link set up`), not carrier.
            let isUp = header.ifi_flags & UInt32(IFF_UP) != 0
            return (index, name, mac, mtu, isUp)
        }
    }

    func interface(addresses: [MediatorEnvironment.AddressPrefix]) -> MediatorEnvironment.Interface {
        MediatorEnvironment.Interface(index: index, name: name, mac: mac, mtu: mtu, isUp: isUp, addresses: addresses)
    }
}
