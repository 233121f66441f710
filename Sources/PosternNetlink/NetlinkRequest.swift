import CMNL
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// One rtnetlink change request, built with libmnl into bytes (so tests compare them with the kernel
/// header layout without a socket) and sent by `NetworkConfigurator`, which waits for its ACK. Every
/// request carries NLM_F_ACK: the kernel answers each with an error code, 0 for success.
public struct NetlinkRequest: Hashable, Sendable {
    /// What the request does, in words, for errors: "add address 192.168.77.50/32 to pts-acme".
    public var summary: String
    public var bytes: [UInt8]

    public typealias Prefix = MediatorEnvironment.AddressPrefix

    /// Largest request built here: headers and a few small attributes.
    static let bufferSize = 512

    /// RTM_NEWLINK on an existing device: set its MTU and bring it up (`ip link set NAME mtu N up`).
    public static func setLinkUp(index: UInt32, name: String, mtu: UInt32, sequence: UInt32) -> NetlinkRequest {
        build("bring \(name) up with MTU \(mtu)", type: RTM_NEWLINK, flags: 0, sequence: sequence) { nlh in
            var header = ifinfomsg()
            header.ifi_family = UInt8(AF_UNSPEC)
            header.ifi_index = Int32(bitPattern: index)
            header.ifi_flags = UInt32(IFF_UP)
            header.ifi_change = UInt32(IFF_UP)
            put(nlh, header)
            mnl_attr_put_u32(nlh, UInt16(IFLA_MTU), mtu)
        }
    }

    /// RTM_DELLINK by name (`ip link del NAME`): removes a device left by a crashed run.
    public static func deleteLink(name: String, sequence: UInt32) -> NetlinkRequest {
        build("delete device \(name)", type: RTM_DELLINK, flags: 0, sequence: sequence) { nlh in
            var header = ifinfomsg()
            header.ifi_family = UInt8(AF_UNSPEC)
            put(nlh, header)
            mnl_attr_put_strz(nlh, UInt16(IFLA_IFNAME), name)
        }
    }

    /// RTM_NEWADDR / RTM_DELADDR (`ip addr add|del PREFIX dev NAME`). Adding refuses an address that is
    /// already there (NLM_F_EXCL): it may be someone else's, and we would delete it when we stop.
    public static func address(
        add: Bool, index: UInt32, interface: String, prefix: Prefix, sequence: UInt32
    ) -> NetlinkRequest {
        let verb = add ? "add address \(prefix) to" : "delete address \(prefix) from"
        return build(
            "\(verb) \(interface)", type: add ? RTM_NEWADDR : RTM_DELADDR, flags: add ? NLM_F_CREATE | NLM_F_EXCL : 0,
            sequence: sequence
        ) { nlh in
            var header = ifaddrmsg()
            header.ifa_family = family(prefix.address)
            header.ifa_prefixlen = prefix.prefixLength
            header.ifa_scope = UInt8(RT_SCOPE_UNIVERSE.rawValue)
            header.ifa_index = index
            put(nlh, header)
            putAddress(nlh, UInt16(IFA_LOCAL), prefix.address)
            putAddress(nlh, UInt16(IFA_ADDRESS), prefix.address)
        }
    }

    /// RTM_NEWROUTE / RTM_DELROUTE of a directly connected route in the main table
    /// (`ip route add|del PREFIX dev NAME`).
    public static func route(
        add: Bool, index: UInt32, interface: String, destination: Prefix, sequence: UInt32
    ) -> NetlinkRequest {
        let verb = add ? "add a route to \(destination) via" : "delete the route to \(destination) via"
        return build(
            "\(verb) \(interface)", type: add ? RTM_NEWROUTE : RTM_DELROUTE, flags: add ? NLM_F_CREATE | NLM_F_EXCL : 0,
            sequence: sequence
        ) { nlh in
            var header = rtmsg()
            header.rtm_family = family(destination.address)
            header.rtm_dst_len = destination.prefixLength
            header.rtm_table = UInt8(RT_TABLE_MAIN.rawValue)
            header.rtm_protocol = UInt8(RTPROT_STATIC)
            header.rtm_scope = UInt8(RT_SCOPE_LINK.rawValue)
            header.rtm_type = UInt8(RTN_UNICAST)
            put(nlh, header)
            putAddress(nlh, UInt16(RTA_DST.rawValue), destination.network.address)
            mnl_attr_put_u32(nlh, UInt16(RTA_OIF.rawValue), index)
        }
    }

    /// RTM_NEWNEIGH / RTM_DELNEIGH of a proxy entry (`ip neigh add|del proxy ADDRESS dev NAME`): the
    /// host answers ARP for `address` on that interface.
    public static func proxyNeighbour(
        add: Bool, index: UInt32, interface: String, address: IPAddress, sequence: UInt32
    ) -> NetlinkRequest {
        let verb = add ? "add a proxy neighbour entry for \(address) on" : "delete the proxy neighbour entry for \(address) on"
        return build(
            "\(verb) \(interface)", type: add ? RTM_NEWNEIGH : RTM_DELNEIGH, flags: add ? NLM_F_CREATE | NLM_F_EXCL : 0,
            sequence: sequence
        ) { nlh in
            var header = ndmsg()
            header.ndm_family = family(address)
            header.ndm_ifindex = Int32(bitPattern: index)
            header.ndm_state = UInt16(NUD_PERMANENT)
            header.ndm_flags = UInt8(NTF_PROXY)
            put(nlh, header)
            putAddress(nlh, UInt16(NDA_DST), address)
        }
    }

    /// RTM_NEWNEIGH with NTF_USE (`ip neigh replace ADDRESS dev NAME use`): the kernel resolves the
    /// address now (an ARP request or a neighbour solicitation on the interface), creating an
    /// ordinary entry in NUD_NONE that the kernel expires as usual. Nothing of ours to undo.
    public static func resolveNeighbour(index: UInt32, interface: String, address: IPAddress, sequence: UInt32) -> NetlinkRequest {
        build("ask who has \(address) on \(interface)", type: RTM_NEWNEIGH, flags: NLM_F_CREATE | NLM_F_REPLACE, sequence: sequence) {
            nlh in
            var header = ndmsg()
            header.ndm_family = family(address)
            header.ndm_ifindex = Int32(bitPattern: index)
            header.ndm_state = UInt16(NUD_NONE)
            header.ndm_flags = UInt8(NTF_USE)
            put(nlh, header)
            putAddress(nlh, UInt16(NDA_DST), address)
        }
    }

    /// RTM_DELNEIGH of an ordinary entry (`ip neigh del ADDRESS dev NAME`): forgets what the cache
    /// holds, so that the next resolution asks the LAN afresh.
    public static func forgetNeighbour(index: UInt32, interface: String, address: IPAddress, sequence: UInt32) -> NetlinkRequest {
        build("forget the neighbour entry for \(address) on \(interface)", type: RTM_DELNEIGH, flags: 0, sequence: sequence) { nlh in
            var header = ndmsg()
            header.ndm_family = family(address)
            header.ndm_ifindex = Int32(bitPattern: index)
            put(nlh, header)
            putAddress(nlh, UInt16(NDA_DST), address)
        }
    }

    // MARK: - Building

    private static func build(
        _ summary: String, type: some BinaryInteger, flags: Int32, sequence: UInt32,
        _ body: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) -> NetlinkRequest {
        // UInt64 words: libmnl writes headers in place and needs 4-byte alignment.
        var words = [UInt64](repeating: 0, count: bufferSize / 8)
        let bytes = words.withUnsafeMutableBytes { raw -> [UInt8] in
            let nlh = mnl_nlmsg_put_header(raw.baseAddress!)!
            nlh.pointee.nlmsg_type = UInt16(truncatingIfNeeded: type)
            nlh.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_ACK | flags)
            nlh.pointee.nlmsg_seq = sequence
            body(nlh)
            return Array(raw.prefix(Int(nlh.pointee.nlmsg_len)))
        }
        return NetlinkRequest(summary: summary, bytes: bytes)
    }

    private static func put<Header>(_ nlh: UnsafeMutablePointer<nlmsghdr>, _ header: Header) {
        let room = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<Header>.size)!
        room.storeBytes(of: header, as: Header.self)
    }

    private static func putAddress(_ nlh: UnsafeMutablePointer<nlmsghdr>, _ type: UInt16, _ address: IPAddress) {
        let bytes = address.bytes
        bytes.withUnsafeBytes { mnl_attr_put(nlh, type, $0.count, $0.baseAddress) }
    }

    private static func family(_ address: IPAddress) -> UInt8 { UInt8(address.isIPv6 ? AF_INET6 : AF_INET) }
}
