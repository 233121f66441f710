import PosternWire

/// The mediator's whole policy (DESIGN.md, "Security stance"). The server cannot widen it: the
/// mediator checks every request against it.
public struct Policy: Hashable, Sendable {
    /// Empty: connect may reach any destination (the mediator's operator chose no restriction)
    /// outside the protected ranges (`ProtectedRange`), which only a rule naming them opens.
    public var allow: [AllowRule]
    /// LISTEN (a port of this network exposed to the server's side): off unless `--allow-listen`.
    public var listenEnabled: Bool
    /// REDIRECT (LAN datagrams to a UDP channel): off unless `--allow-redirect`.
    public var redirectEnabled: Bool

    public init(allow: [AllowRule] = [], listenEnabled: Bool = false, redirectEnabled: Bool = false) {
        self.allow = allow
        self.listenEnabled = listenEnabled
        self.redirectEnabled = redirectEnabled
    }

    /// Whether CONNECT (or a datagram) may reach `address:port`. The address is normalised first,
    /// so an IPv4-mapped or -compatible IPv6 address meets the IPv4 rules. An address in a
    /// `ProtectedRange` (the mediator's own host, its link, the cloud metadata service) needs a rule
    /// that names that range and admits the port, with or without other rules.
    public func allowsConnect(to address: IPAddress, port: UInt16) -> Bool {
        let address = address.normalized
        if let range = ProtectedRange.containing(address) {
            return allow.contains { $0.names(range) && $0.allows(address, port: port) }
        }
        return allow.isEmpty || allow.contains { $0.allows(address, port: port) }
    }

    /// Whether OPEN or REDIRECT may bind `address` on the mediator. The unspecified address (every
    /// interface) and ordinary addresses may be bound; one in a `ProtectedRange` (after
    /// normalisation) only when a rule names that range and covers the address, whatever its ports:
    /// a socket bound there speaks with the host's own loopback or link as its source.
    public func allowsBind(to address: IPAddress) -> Bool {
        let address = address.normalized
        if address.isUnspecified { return true }
        guard let range = ProtectedRange.containing(address) else { return true }
        return allow.contains { $0.names(range) && $0.covers(address) }
    }

    /// Whether ECHO (ICMP echo, docs/protocol.md §11.3) may reach `address`: when CONNECT could reach
    /// it on some port. No rule: any address outside the protected ranges; rules: one that covers the
    /// address, whatever its ports; a protected range only through a rule naming it.
    public func allowsEcho(to address: IPAddress) -> Bool {
        let address = address.normalized
        if let range = ProtectedRange.containing(address) {
            return allow.contains { $0.names(range) && $0.covers(address) }
        }
        return allow.isEmpty || allow.contains { $0.covers(address) }
    }
}
