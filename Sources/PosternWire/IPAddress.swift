#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address as a value. Pure: parsing and formatting use `inet_pton`/`inet_ntop`,
/// which touch no sockets.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    /// Sixteen bytes in network order.
    case v6([UInt8])

    public static let anyV4 = IPAddress.v4(0)
    public static let anyV6 = IPAddress.v6([UInt8](repeating: 0, count: 16))

    /// Parses "192.0.2.1", "2001:db8::1" or "[2001:db8::1]".
    public init?(_ text: some StringProtocol) {
        var s = String(text)
        if s.hasPrefix("[") && s.hasSuffix("]") { s = String(s.dropFirst().dropLast()) }
        var a4 = in_addr()
        if inet_pton(AF_INET, s, &a4) == 1 {
            self = .v4(UInt32(bigEndian: a4.s_addr))
            return
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, s, &a6) == 1 {
            self = .v6(withUnsafeBytes(of: &a6) { Array($0) })
            return
        }
        return nil
    }

    /// Builds an address from 4 or 16 network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            self = .v6(Array(bytes))
        default:
            return nil
        }
    }

    public var bytes: [UInt8] {
        switch self {
        case .v4(let v):
            return [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
        case .v6(let b):
            return b
        }
    }

    public var isIPv6: Bool {
        if case .v6 = self { return true }
        return false
    }

    public var isUnspecified: Bool { bytes.allSatisfy { $0 == 0 } }

    /// The address a socket would really reach, for every decision of policy: an IPv4-mapped
    /// (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`) IPv6 address is the IPv4 address it
    /// carries (a dual-stack socket sends a mapped one over IPv4; a compatible one goes to that IPv4
    /// address by an automatic tunnel). Every other address, `::` and `::1` among them, is itself.
    /// Without this, `--allow ::/0` would admit `::ffff:127.0.0.1`.
    public var normalized: IPAddress {
        guard case .v6(let b) = self, b.count == 16, b[0..<10].allSatisfy({ $0 == 0 }) else { return self }
        let v4 = IPAddress(bytes: b[12..<16])!
        switch (b[10], b[11]) {
        case (0xff, 0xff):
            return v4
        case (0, 0):
            guard case .v4(let value) = v4, value > 1 else { return self }  // :: and ::1 stay IPv6
            return v4
        default:
            return self
        }
    }

    /// 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        switch self {
        case .v4(let v): return v >> 24 == 127
        case .v6(let b): return b == [UInt8](repeating: 0, count: 15) + [1]
        }
    }

    public var description: String {
        switch self {
        case .v4(let v):
            return "\(v >> 24).\(v >> 16 & 0xff).\(v >> 8 & 0xff).\(v & 0xff)"
        case .v6(var b):
            precondition(b.count == 16)
            var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            return b.withUnsafeMutableBytes { raw in
                inet_ntop(AF_INET6, raw.baseAddress, &out, socklen_t(out.count))
                return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
    }

    /// The address as written next to a port: IPv6 in brackets.
    public var bracketed: String { isIPv6 ? "[\(description)]" : description }
}
