#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
