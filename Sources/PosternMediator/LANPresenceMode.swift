/// How TUN mode gives the remote address its presence on the LAN (`--lan-presence`).
public enum LANPresenceMode: String, Sendable, Hashable, CaseIterable {
    /// A tun device, a route, a proxy neighbour entry and forwarding sysctls: the host's kernel
    /// routes the packets (needs CAP_NET_ADMIN).
    case proxy
    /// An `AF_PACKET` socket on the LAN interface: the mediator answers ARP and sends the frames
    /// itself; the host's routing and sysctls stay untouched (needs CAP_NET_RAW).
    case raw
}
