import PosternWire

/// One `--allow CIDR[:PORTS]` rule of the mediator's policy: which destinations CONNECT may reach.
/// `192.168.77.0/24`, `192.168.77.10:80,443`, `10.0.0.0/8:8000-8100`, `[fd00::/64]:22`, `fd00::/64`.
public struct AllowRule: Hashable, Sendable, CustomStringConvertible {
    public var network: IPAddress
    public var prefixLength: Int
    /// Inclusive port ranges; empty means every port.
    public var ports: [ClosedRange<UInt16>]
    public var text: String
    /// `any`/`*`: every address of both families.
    public var anyFamily = false

    public var description: String { text }

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var rule: String
        public var reason: String
        public var description: String { "invalid --allow rule '\(rule)': \(reason)" }
    }

    public init(parsing rule: String) throws {
        func bad(_ reason: String) -> ParseError { ParseError(rule: rule, reason: reason) }
        text = rule
        var cidrPart: Substring
        var portPart: Substring? = nil
        if rule.hasPrefix("[") {
            guard let close = rule.firstIndex(of: "]") else { throw bad("missing ']'") }
            cidrPart = rule[rule.index(after: rule.startIndex)..<close]
            let rest = rule[rule.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw bad("expected ':PORTS' after ']'") }
                portPart = rest.dropFirst()
            }
        } else if rule.filter({ $0 == ":" }).count == 1 {
            let colon = rule.firstIndex(of: ":")!
            cidrPart = rule[..<colon]
            portPart = rule[rule.index(after: colon)...]
        } else {
            cidrPart = Substring(rule)  // IPv4 without ports, or bare IPv6 (ports need brackets)
        }
        if cidrPart == "any" || cidrPart == "*" {
            cidrPart = "0.0.0.0/0"
            anyFamily = true
        }
        let pieces = cidrPart.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(pieces.count), let address = IPAddress(pieces[0]) else {
            throw bad("'\(cidrPart)' is not an address or CIDR")
        }
        let maxPrefix = address.isIPv6 ? 128 : 32
        if pieces.count == 2 {
            guard let p = Int(pieces[1]), (0...maxPrefix).contains(p) else { throw bad("prefix length must be 0-\(maxPrefix)") }
            prefixLength = p
        } else {
            prefixLength = maxPrefix
        }
        network = Self.mask(address, prefixLength)
        // A rule written in the IPv4-mapped or -compatible form (`::ffff:10.0.0.0/104`) is the IPv4
        // rule it means, since addresses are normalised the same way before they meet the rules.
        if network.isIPv6, prefixLength >= 96, !network.normalized.isIPv6 {
            network = network.normalized
            prefixLength -= 96
        }
        ports = []
        if let portPart {
            for item in portPart.split(separator: ",") {
                let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
                guard (1...2).contains(bounds.count), let lo = UInt16(bounds[0]), let hi = UInt16(bounds.last!), lo <= hi, lo > 0 else {
                    throw bad("'\(item)' is not a port or port range")
                }
                ports.append(lo...hi)
            }
            if ports.isEmpty { throw bad("empty port list") }
        }
    }

    /// Whether the rule admits `address` (normalised first: `::ffff:a.b.c.d` is IPv4) and `port`.
    /// Protected ranges are the policy's business (`Policy.allowsConnect`), not the rule's.
    public func allows(_ address: IPAddress, port: UInt16) -> Bool {
        covers(address) && (ports.isEmpty || ports.contains { $0.contains(port) })
    }

    /// Whether the rule's network holds `address` (normalised first), whatever the port.
    public func covers(_ address: IPAddress) -> Bool {
        if anyFamily { return true }
        let address = address.normalized
        guard address.isIPv6 == network.isIPv6 else { return false }
        return Self.mask(address, prefixLength) == network
    }

    /// Whether the rule names addresses of `range` explicitly: its network lies inside the range
    /// (`127.0.0.1:22`, `169.254.0.0/16`). A rule that only contains the range (`0.0.0.0/0`,
    /// `::/0`, `any`, `127.0.0.0/7`) does not: opening the mediator's own host takes intent.
    public func names(_ range: ProtectedRange) -> Bool {
        !anyFamily && range.contains(network: network, prefixLength: prefixLength)
    }

    static func mask(_ a: IPAddress, _ prefix: Int) -> IPAddress {
        var bytes = a.bytes
        for i in bytes.indices {
            let bitsHere = max(0, min(8, prefix - i * 8))
            bytes[i] &= bitsHere == 8 ? 0xff : ~(0xff >> UInt8(bitsHere))
        }
        return IPAddress(bytes: bytes)!
    }
}
