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

/// The host part of a destination: an address, or a name the mediator resolves in its own network.
public enum Host: Hashable, Sendable, CustomStringConvertible {
    case ip(IPAddress)
    case name(String)

    public init(_ text: some StringProtocol) {
        if let ip = IPAddress(text) { self = .ip(ip) } else { self = .name(String(text)) }
    }

    public var description: String {
        switch self {
        case .ip(let a): return a.bracketed
        case .name(let n): return n
        }
    }
}

/// A host and port, written `host:port` or `[v6]:port`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: Host
    public var port: UInt16

    public init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init(_ address: IPAddress, _ port: UInt16) {
        self.init(host: .ip(address), port: port)
    }

    /// Parses `host:port`, `1.2.3.4:80`, `[fd00::1]:80`. Returns nil when the port is missing or invalid.
    public init?(parsing text: some StringProtocol) {
        let s = String(text)
        let hostPart: Substring
        let portPart: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            hostPart = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
            guard IPAddress(hostPart)?.isIPv6 == true else { return nil }
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            hostPart = s[..<colon]
            portPart = s[s.index(after: colon)...]
            if hostPart.contains(":") { return nil }  // bare IPv6 needs brackets
        }
        guard !hostPart.isEmpty, let port = UInt16(portPart) else { return nil }
        self.init(host: Host(hostPart), port: port)
    }

    public var description: String { "\(host):\(port)" }
}
