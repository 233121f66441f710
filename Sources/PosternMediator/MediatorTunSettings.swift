import PosternWire

/// TUN mode as the mediator's operator allows it (`--tun`, `--tun-allow`; off by default).
public struct MediatorTunSettings: Sendable, Hashable {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    /// The remote side's addresses on the LAN with the LAN's prefix length (`192.168.77.50/24`,
    /// `fd00:77::50/64`): one or two, at most one per family, IPv4 first. Each LAN prefix itself is
    /// allowed; the interface holding an address in it is where LAN hosts find the remote side (a
    /// proxy neighbour entry: ARP for IPv4, NDP for IPv6).
    public var addresses: [Prefix]
    /// More LAN prefixes packets may reach (routed subnets behind the LAN's router).
    public var extraPrefixes: [Prefix]
    /// Where the undo journal lives (`tun-DEVICE.journal`), so a restart undoes a crashed run.
    public var stateDirectory: String
    /// The largest MTU the mediator accepts, whatever the server asks.
    public var maxMTU = 1400
    /// How the remote address is present on the LAN (`--lan-presence`).
    public var lanPresence = LANPresenceMode.proxy
    /// Whether the tun device asks the kernel for offloads (IFF_VNET_HDR, TUNSETOFFLOAD); false:
    /// `--tun-offload off`, one packet per read and write.
    public var offload = true

    public init(address: Prefix, extraPrefixes: [Prefix] = [], stateDirectory: String) {
        self.init(addresses: [address], extraPrefixes: extraPrefixes, stateDirectory: stateDirectory)
    }

    /// `addresses` in any order; kept IPv4 first.
    public init(addresses: [Prefix], extraPrefixes: [Prefix] = [], stateDirectory: String) {
        precondition(!addresses.isEmpty && addresses.count <= 2)
        self.addresses = addresses.filter { !$0.address.isIPv6 } + addresses.filter { $0.address.isIPv6 }
        self.extraPrefixes = extraPrefixes
        self.stateDirectory = stateDirectory
    }

    /// The first address: IPv4 when there is one.
    public var address: Prefix { addresses[0] }
    public var ipv4: Prefix? { addresses.first { !$0.address.isIPv6 } }
    public var ipv6: Prefix? { addresses.first { $0.address.isIPv6 } }

    /// Every prefix packets may reach: the LAN's own (per address), then the extra ones.
    public var prefixes: [Prefix] {
        var all: [Prefix] = []
        for p in addresses.map(\.network) + extraPrefixes.map(\.network) where !all.contains(p) { all.append(p) }
        return all
    }

    /// The prefixes of the families the remote side has an address of (an IPv6 `--tun-allow`
    /// without an IPv6 `--tun` carries nothing).
    public func prefixes(ipv6 allowed: Bool) -> [Prefix] {
        prefixes.filter { allowed || !$0.address.isIPv6 }
    }
}
