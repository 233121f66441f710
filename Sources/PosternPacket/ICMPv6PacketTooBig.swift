import NIOCore
import PosternWire

/// The ICMPv6 "packet too big" error (RFC 4443 §3.2, type 2 code 0) that TUN mode answers an IPv6
/// packet with when it is larger than the tunnel carries: IPv6 routers never fragment, so every
/// oversize packet gets one (there is no DF bit), and path MTU discovery (RFC 8201) learns the MTU.
/// Pure; a packet that must not get an error (RFC 4443 §2.4 (e)) or that does not parse gets none.
public enum ICMPv6PacketTooBig {
    public static let type: UInt8 = 2
    public static let code: UInt8 = 0
    /// ICMPv6's next-header value.
    public static let nextHeader: UInt8 = 58
    /// An ICMPv6 error must not make a packet larger than the minimum IPv6 MTU (RFC 4443 §2.4 (c)):
    /// the quote is cut to fit.
    public static let minimumMTU = 1280

    /// The error for `packet`, addressed back to its source in the name of its destination (as
    /// `ICMPFragmentationNeeded` does), carrying `mtu` and as much of the packet as fits in 1,280
    /// bytes. Nil when no error may be sent: not a well-formed IPv6 packet, an ICMPv6 error itself
    /// (types below 128, RFC 4443 §2.4 (e.1)), a source that is not one unicast host (unspecified,
    /// loopback, multicast), or a multicast destination (we could not answer in its name).
    public static func make(for packet: ByteBuffer, mtu: Int) -> ByteBuffer? {
        guard let parsed = try? IPPacket(parsing: packet), parsed.version == .v6 else { return nil }
        let base = packet.readerIndex
        let source = packet.getBytes(at: base + 8, length: 16)!
        let destination = packet.getBytes(at: base + 24, length: 16)!
        guard isUnicastHost(source), isUnicastHost(destination) else { return nil }
        if parsed.transportProtocol == nextHeader {
            guard parsed.totalLength > 40, let icmpType = packet.getInteger(at: base + 40, as: UInt8.self), icmpType >= 128 else {
                return nil
            }
        }
        let quoteLength = min(parsed.totalLength, minimumMTU - 40 - 8)
        let quoted = packet.getSlice(at: base, length: quoteLength)!
        let icmpLength = 8 + quoteLength
        var out = ByteBuffer()
        out.reserveCapacity(40 + icmpLength)
        out.writeInteger(UInt32(0x6000_0000))  // version 6, traffic class 0, flow label 0
        out.writeInteger(UInt16(icmpLength))
        out.writeInteger(nextHeader)
        out.writeInteger(UInt8(64))  // hop limit
        out.writeBytes(destination)
        out.writeBytes(source)
        out.writeInteger(type)
        out.writeInteger(code)
        out.writeInteger(UInt16(0))  // checksum, below
        out.writeInteger(UInt32(clamping: max(0, mtu)))
        out.writeImmutableBuffer(quoted)
        out.setInteger(
            TransportChecksum.ipv6(out, ipBase: 0, upperLayer: 40, length: icmpLength, nextHeader: nextHeader), at: 42)
        return out
    }

    /// Not the unspecified address, loopback (::1) or multicast (ff00::/8).
    static func isUnicastHost(_ address: [UInt8]) -> Bool {
        guard address[0] != 0xff else { return false }
        let zeroPrefix = address.prefix(15).allSatisfy { $0 == 0 }
        return !(zeroPrefix && (address[15] == 0 || address[15] == 1))
    }
}
