import PosternWire

/// Which mediator in TUN mode routes which LAN prefixes on the server. The server's routing table can
/// send a destination to one tun device only, so a mediator whose prefixes (or remote address) overlap
/// another's is refused with a message naming both; the first one keeps them. Pure.
public struct TunPrefixClaims: Sendable {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    private var claims: [String: [Prefix]] = [:]

    public init() {}

    /// Claims `prefixes` (and the host route of `remoteAddress`) for mediator `name`; returns why not
    /// when another mediator holds an overlapping prefix. A mediator claiming again replaces its claim.
    public mutating func claim(_ name: String, remoteAddress: IPAddress, prefixes: [Prefix]) -> String? {
        let host = Prefix(address: remoteAddress, prefixLength: remoteAddress.isIPv6 ? 128 : 32)
        let wanted = prefixes.map(\.network) + [host]
        for (other, held) in claims.sorted(by: { $0.key < $1.key }) where other != name {
            for w in wanted {
                if let clash = held.first(where: { $0.overlaps(w) }) {
                    return "\(w) overlaps \(clash) of mediator '\(other)', which is in TUN mode already"
                }
            }
        }
        claims[name] = wanted
        return nil
    }

    public mutating func release(_ name: String) {
        claims[name] = nil
    }

    public func prefixes(of name: String) -> [Prefix]? { claims[name] }
}
