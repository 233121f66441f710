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

    /// An IPv4 endpoint is written digit by digit into one string: every relayed connection's
    /// port record formats its endpoints, and the nested interpolations (endpoint, host, address,
    /// each number) cost a forwarded connection about 1% of the server's CPU (perf, issue 15).
    public var description: String {
        guard case .ip(.v4(let v)) = host else { return "\(host):\(port)" }
        // "255.255.255.255:65535" is 21 bytes.
        return String(unsafeUninitializedCapacity: 21) { out in
            var i = 0
            func byte(_ b: UInt8) {
                out[i] = b
                i += 1
            }
            func put(_ n: UInt32) {
                if n >= 10_000 { byte(UInt8(ascii: "0") + UInt8(n / 10_000)) }
                if n >= 1_000 { byte(UInt8(ascii: "0") + UInt8(n / 1_000 % 10)) }
                if n >= 100 { byte(UInt8(ascii: "0") + UInt8(n / 100 % 10)) }
                if n >= 10 { byte(UInt8(ascii: "0") + UInt8(n / 10 % 10)) }
                byte(UInt8(ascii: "0") + UInt8(n % 10))
            }
            func dot() { byte(UInt8(ascii: ".")) }
            put(v >> 24)
            dot()
            put(v >> 16 & 0xff)
            dot()
            put(v >> 8 & 0xff)
            dot()
            put(v & 0xff)
            byte(UInt8(ascii: ":"))
            put(UInt32(port))
            return i
        }
    }
}
