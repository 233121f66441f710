import NIOCore

/// Lowers the MSS option of TCP SYNs that cross TUN mode to what fits the devices' MTU, as routers do
/// on tunnels (`iptables … TCPMSS --clamp-mss-to-pmtu`): so TCP never sends segments the tunnel's MTU
/// would refuse, even where the ICMP "fragmentation needed" of path MTU discovery is filtered. IPv4
/// and IPv6 (a TCP header right after the fixed IPv6 header; a SYN behind extension headers is left
/// alone). Pure; every length is checked before it is used, so garbage leaves the packet alone.
public enum TCPMSSClamp {
    /// The MSS that fits `mtu` for IPv4: the MTU less the IPv4 and TCP headers without options.
    public static func maxMSS(forMTU mtu: Int) -> UInt16 { UInt16(clamping: max(0, mtu - 40)) }

    /// IPv6's header is 20 bytes longer than IPv4's: its MSS for the same MTU is 20 less (MTU − 60).
    static let ipv6Extra: UInt16 = 20

    /// If `packet` is a TCP segment with SYN set whose MSS option exceeds what fits, rewrites the option
    /// and recomputes the TCP checksum (over the IPv4 or IPv6 pseudo-header). `maxMSS` is the IPv4
    /// figure (`maxMSS(forMTU:)`); an IPv6 segment gets 20 less. Returns whether it changed the packet.
    @discardableResult
    public static func clamp(_ packet: inout ByteBuffer, maxMSS: UInt16) -> Bool {
        let base = packet.readerIndex
        guard let first = packet.getInteger(at: base, as: UInt8.self) else { return false }
        let ipHeader: Int
        let total: Int
        let limit: UInt16
        let isIPv6: Bool
        switch first >> 4 {
        case 4:
            guard packet.readableBytes >= 20,
                packet.getInteger(at: base + 9, as: UInt8.self) == 6,
                // Only a first fragment (offset 0) holds the TCP header.
                let fragment = packet.getInteger(at: base + 6, as: UInt16.self), fragment & 0x1fff == 0,
                let total16 = packet.getInteger(at: base + 2, as: UInt16.self)
            else { return false }
            ipHeader = Int(first & 0x0f) * 4
            total = Int(total16)
            limit = maxMSS
            isIPv6 = false
        case 6:
            guard packet.readableBytes >= 40, packet.getInteger(at: base + 6, as: UInt8.self) == 6,
                let payload = packet.getInteger(at: base + 4, as: UInt16.self)
            else { return false }
            ipHeader = 40
            total = 40 + Int(payload)
            limit = maxMSS > ipv6Extra ? maxMSS - ipv6Extra : 0
            isIPv6 = true
        default:
            return false
        }
        guard ipHeader >= 20, total <= packet.readableBytes, total >= ipHeader + 20 else { return false }
        let tcp = base + ipHeader
        guard let offsetByte = packet.getInteger(at: tcp + 12, as: UInt8.self),
            let flags = packet.getInteger(at: tcp + 13, as: UInt8.self), flags & 0x02 != 0
        else { return false }
        let tcpHeader = Int(offsetByte >> 4) * 4
        guard tcpHeader >= 20, ipHeader + tcpHeader <= total else { return false }
        var i = tcp + 20
        let end = tcp + tcpHeader
        while i < end {
            let kind = packet.getInteger(at: i, as: UInt8.self)!
            if kind == 0 { return false }  // end of options
            if kind == 1 {  // no-operation
                i += 1
                continue
            }
            guard i + 1 < end, let length = packet.getInteger(at: i + 1, as: UInt8.self), length >= 2, i + Int(length) <= end else {
                return false
            }
            if kind == 2 {
                guard length == 4, let mss = packet.getInteger(at: i + 2, as: UInt16.self) else { return false }
                guard mss > limit else { return false }
                packet.setInteger(limit, at: i + 2)
                packet.setInteger(UInt16(0), at: tcp + 16)
                let sum =
                    isIPv6
                    ? TransportChecksum.ipv6(packet, ipBase: base, upperLayer: tcp, length: total - ipHeader, nextHeader: 6)
                    : checksum(packet, ipBase: base, tcp: tcp, tcpLength: total - ipHeader)
                packet.setInteger(sum, at: tcp + 16)
                return true
            }
            i += Int(length)
        }
        return false
    }

    /// The TCP checksum over the IPv4 pseudo-header and the segment (its checksum field zeroed).
    static func checksum(_ packet: ByteBuffer, ipBase: Int, tcp: Int, tcpLength: Int) -> UInt16 {
        var pseudo = ByteBuffer()
        pseudo.writeBytes(packet.getBytes(at: ipBase + 12, length: 8)!)  // source and destination
        pseudo.writeInteger(UInt8(0))
        pseudo.writeInteger(UInt8(6))
        pseudo.writeInteger(UInt16(tcpLength))
        pseudo.writeBytes(packet.getBytes(at: tcp, length: tcpLength)!)
        return InternetChecksum.compute(pseudo, at: 0, length: pseudo.readableBytes)
    }
}
