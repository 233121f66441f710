import PosternWire

/// What a forward may carry after its target, as `,KEY=VALUE` items (README, "Forwards"):
///
///     tcp:0.0.0.0:8080=acme/192.168.77.10:80,proxy=v2,allow=203.0.113.0/24,allow=2001:db8::/32,rate=10M
///
/// - `proxy=v1|v2`: the target gets a PROXY protocol header naming the user's address (TCP only).
/// - `allow=CIDR` (repeatable): only users from these networks are served; others are turned away
///   at accept (TCP) or dropped (UDP), and counted as policy denials.
/// - `rate=N[K|M|G]`: at most N bytes a second in each direction, for the whole forward
///   (K, M, G are 10^3, 10^6, 10^9).
///
/// Options belong to forwards the server listens on (the user connects to the server); the others
/// refuse them. Equal options are equal however they were spelled or ordered.
public struct ForwardOptions: Hashable, Sendable {
    public var proxy: ProxyHeader.Version?
    /// Empty: every source is served. Networks with their host bits cleared, sorted, without repeats.
    public private(set) var allow: [MediatorEnvironment.AddressPrefix] = []
    /// Bytes a second in each direction; nil: unlimited.
    public var rate: UInt64?

    public init() {}

    public var isEmpty: Bool { proxy == nil && allow.isEmpty && rate == nil }

    /// Whether a user at `address` may use the forward (IPv4-mapped addresses count as IPv4).
    public func allows(_ address: IPAddress) -> Bool {
        guard !allow.isEmpty else { return true }
        let a = address.normalized
        return allow.contains { $0.contains(a) }
    }

    /// Adds the networks, keeping them in the canonical order.
    public mutating func addAllowed(_ prefixes: [MediatorEnvironment.AddressPrefix]) {
        allow = Array(Set(allow + prefixes)).sorted { a, b in
            if a.address.isIPv6 != b.address.isIPv6 { return !a.address.isIPv6 }
            if a.address != b.address { return a.address.bytes.lexicographicallyPrecedes(b.address.bytes) }
            return a.prefixLength < b.prefixLength
        }
    }

    /// Parses the comma-separated items after a target; `reason` errors name the bad item.
    public init(parsing items: [Substring]) throws(ForwardOptionError) {
        for item in items {
            guard let eq = item.firstIndex(of: "=") else { throw ForwardOptionError("option '\(item)' is not KEY=VALUE") }
            let key = item[..<eq].lowercased()
            let value = item[item.index(after: eq)...]
            switch key {
            case "proxy":
                guard proxy == nil else { throw ForwardOptionError("proxy= given twice") }
                guard let v = ProxyHeader.Version(rawValue: value.lowercased()) else {
                    throw ForwardOptionError("proxy= must be v1 or v2, not '\(value)'")
                }
                proxy = v
            case "allow":
                guard let prefix = Self.prefix(value) else {
                    throw ForwardOptionError("allow= must be an address or CIDR (IPv6 without brackets), not '\(value)'")
                }
                addAllowed([prefix])
            case "rate":
                guard rate == nil else { throw ForwardOptionError("rate= given twice") }
                guard let r = Self.rate(value) else {
                    throw ForwardOptionError("rate= must be a positive number of bytes a second with an optional K, M or G, not '\(value)'")
                }
                rate = r
            default:
                throw ForwardOptionError("unknown option '\(key)' (proxy=, allow=, rate=)")
            }
        }
    }

    /// `203.0.113.0/24`, `203.0.113.7`, `2001:db8::/32`; an IPv4-mapped prefix is the IPv4 one it means.
    static func prefix(_ text: Substring) -> MediatorEnvironment.AddressPrefix? {
        guard let p = MediatorEnvironment.AddressPrefix(parsing: text) else { return nil }
        var n = p.network
        if n.address.isIPv6, n.prefixLength >= 96, !n.address.normalized.isIPv6 {
            n = .init(address: n.address.normalized, prefixLength: n.prefixLength - 96)
        }
        return n
    }

    /// `500000`, `500K`, `10M`, `1G` (powers of 1000), at least 1 and at most 10^15.
    static func rate(_ text: Substring) -> UInt64? {
        var digits = text
        var scale: UInt64 = 1
        switch text.last.map({ Character($0.uppercased()) }) {
        case "K": scale = 1_000
        case "M": scale = 1_000_000
        case "G": scale = 1_000_000_000
        default: break
        }
        if scale != 1 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt64(digits), n > 0,
            n <= 1_000_000_000_000_000 / scale
        else {
            return nil
        }
        return n * scale
    }
}

public struct ForwardOptionError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
