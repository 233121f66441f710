/// What one end of TUN mode did with packets, per direction: carried, or dropped and why
/// (`PacketPolicy.Drop`). Shown by `postern ctl mediators`.
public struct PacketCounters: Hashable, Sendable, Codable {
    /// Packets from the remote side written toward the LAN (mediator) or sent to the mediator (server).
    public var toLAN: UInt64 = 0
    /// Packets from the LAN sent to the server (mediator) or written to the server's tun (server).
    public var fromLAN: UInt64 = 0
    /// Drops by reason (`PacketPolicy.Drop` raw values, plus "path" when the tunnel could not take a
    /// packet and "device" when the tun device refused one).
    public var dropped: [String: UInt64] = [:]
    /// ICMP "fragmentation needed" errors sent back for DF packets larger than TUN mode carries
    /// (`ICMPFragmentationNeeded`), and ICMPv6 "packet too big" for IPv6 ones (`ICMPv6PacketTooBig`);
    /// their packets are also counted in `dropped["tooLarge"]`.
    public var fragmentationNeeded: UInt64 = 0
    /// The end's tun device and its offloads; nil when the end has none (`--lan-presence raw`), or
    /// when a mediator's TUN_STATS did not carry them (an older mediator).
    public var offload: DeviceOffloadCounters?

    public init() {}

    public mutating func drop(_ reason: String) { dropped[reason, default: 0] &+= 1 }

    public var totalDropped: UInt64 { dropped.values.reduce(0, &+) }
}
