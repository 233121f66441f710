import PosternWire

/// TUN mode as the mediator's operator allows it (`--tun`, `--tun-allow`; off by default).
public struct MediatorTunSettings: Sendable, Hashable {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    /// The remote side's address on the LAN with the LAN's prefix length (`192.168.77.50/24`). The LAN
    /// prefix itself is allowed; the interface holding an address in it is where LAN hosts find the
    /// remote side (a proxy neighbour entry).
    public var address: Prefix
    /// More LAN prefixes packets may reach (routed subnets behind the LAN's router).
    public var extraPrefixes: [Prefix]
    /// Where the undo journal lives (`tun-DEVICE.journal`), so a restart undoes a crashed run.
    public var stateDirectory: String
    /// The largest MTU the mediator accepts, whatever the server asks.
    public var maxMTU = 1400
    /// How the remote address is present on the LAN (`--lan-presence`).
    public var lanPresence = LANPresenceMode.proxy

    public init(address: Prefix, extraPrefixes: [Prefix] = [], stateDirectory: String) {
        self.address = address
        self.extraPrefixes = extraPrefixes
        self.stateDirectory = stateDirectory
    }

    /// Every prefix packets may reach: the LAN's own, then the extra ones.
    public var prefixes: [Prefix] {
        var all = [address.network]
        for p in extraPrefixes.map(\.network) where !all.contains(p) { all.append(p) }
        return all
    }
}
