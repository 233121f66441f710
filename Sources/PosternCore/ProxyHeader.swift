import PosternWire

/// The PROXY protocol header (HAProxy's "PROXY protocol" spec, versions 1 and 2) that a forward with
/// `proxy=v1`/`proxy=v2` sends its target ahead of the user's bytes, so a LAN server sees the user's
/// address instead of the mediator's. Pure: bytes in, bytes out.
public enum ProxyHeader {
    public enum Version: String, Hashable, Sendable {
        case v1, v2
    }

    /// The 12 bytes every version 2 header starts with (spec §2.2).
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// The header for a TCP connection from `source` to `destination` (the address the user reached).
    /// IPv4-mapped addresses of a dual-stack socket are written as the IPv4 addresses they are. When
    /// the two sides' families differ (or nothing is known), v1 says `UNKNOWN` and v2 sends a LOCAL
    /// header: the receiver then uses the connection's own addresses, as the spec asks.
    public static func encode(_ version: Version, source: (IPAddress, UInt16)?, destination: (IPAddress, UInt16)?) -> [UInt8] {
        var pair: (src: IPAddress, dst: IPAddress, sport: UInt16, dport: UInt16)?
        if let source, let destination {
            let src = source.0.normalized
            let dst = destination.0.normalized
            if src.isIPv6 == dst.isIPv6 { pair = (src, dst, source.1, destination.1) }
        }
        switch version {
        case .v1:
            guard let p = pair else { return Array("PROXY UNKNOWN\r\n".utf8) }
            let family = p.src.isIPv6 ? "TCP6" : "TCP4"
            return Array("PROXY \(family) \(p.src) \(p.dst) \(p.sport) \(p.dport)\r\n".utf8)
        case .v2:
            var out = v2Signature
            guard let p = pair else {
                // Version 2, command LOCAL; family UNSPEC; no address block.
                out += [0x20, 0x00, 0x00, 0x00]
                return out
            }
            // Version 2, command PROXY; then TCP over IPv4 (0x11) or IPv6 (0x21).
            out.append(0x21)
            out.append(p.src.isIPv6 ? 0x21 : 0x11)
            let length: UInt16 = p.src.isIPv6 ? 36 : 12
            out += [UInt8(length >> 8), UInt8(length & 0xff)]
            out += p.src.bytes
            out += p.dst.bytes
            out += [UInt8(p.sport >> 8), UInt8(p.sport & 0xff), UInt8(p.dport >> 8), UInt8(p.dport & 0xff)]
            return out
        }
    }
}
