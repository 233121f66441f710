import NIOCore
import PosternWire

/// The ICMP "destination unreachable, fragmentation needed and DF set" error (RFC 792 type 3 code 4,
/// with RFC 1191's next-hop MTU) that TUN mode answers an IPv4 packet with when the packet has DF set
/// and is larger than the tunnel carries: so path MTU discovery learns the tunnel's MTU instead of
/// the packet vanishing and TCP stalling. Pure; a packet that must not get an error (RFC 1122
/// §3.2.2, RFC 1812 §4.3.2.7) or that does not parse gets none.
public enum ICMPFragmentationNeeded {
    /// The ICMP type and code.
    public static let type: UInt8 = 3
    public static let code: UInt8 = 4
    /// Bytes of the offending packet's data quoted after its IP header (RFC 792: "the first 64 bits").
    public static let quotedDataBytes = 8

    /// Whether `packet` is IPv4 with the "don't fragment" flag set.
    public static func hasDontFragment(_ packet: ByteBuffer) -> Bool {
        guard let first = packet.getInteger(at: packet.readerIndex, as: UInt8.self), first >> 4 == 4,
            let flags = packet.getInteger(at: packet.readerIndex + 6, as: UInt16.self)
        else { return false }
        return flags & 0x4000 != 0
    }

    /// The error for `packet`, addressed back to its source in the name of its destination (TUN mode
    /// has no address of its own on the path, and the sender's connection tracking matches the quoted
    /// header, not the error's source), carrying `nextHopMTU`. Nil when no error may be sent: not a
    /// well-formed IPv4 packet with a correct header checksum, DF not set, not the first fragment,
    /// an ICMP error itself, or a source or destination that is not one unicast host.
    public static func make(for packet: ByteBuffer, nextHopMTU: Int) -> ByteBuffer? {
        guard hasDontFragment(packet) else { return nil }
        return error(for: packet, type: type, code: code, nextHopMTU: UInt16(clamping: max(0, nextHopMTU)), from: nil)
    }

    /// The ICMP error `type`/`code` about `packet`, sent back to its source from `from` (nil: in the
    /// name of its destination); nil when no error may be sent (see `make`, DF aside).
    static func error(for packet: ByteBuffer, type: UInt8, code: UInt8, nextHopMTU: UInt16, from: IPAddress?) -> ByteBuffer? {
        guard let parsed = try? IPPacket(parsing: packet), parsed.version == .v4,
            InternetChecksum.isValidIPv4Header(packet, headerLength: parsed.headerLength)
        else { return nil }
        let base = packet.readerIndex
        let fragmentOffset = packet.getInteger(at: base + 6, as: UInt16.self)! & 0x1fff
        guard fragmentOffset == 0 else { return nil }
        let source = packet.getBytes(at: base + 12, length: 4)!
        let destination = packet.getBytes(at: base + 16, length: 4)!
        guard isUnicastHost(source), isUnicastHost(destination) else { return nil }
        let errorSource = from.map(\.bytes) ?? destination
        guard errorSource.count == 4 else { return nil }
        let quotedData = min(quotedDataBytes, parsed.totalLength - parsed.headerLength)
        if parsed.transportProtocol == 1 {
            // An ICMP error about an ICMP error could loop; only queries (echo and the like) get one.
            guard quotedData >= 1, let icmpType = packet.getInteger(at: base + parsed.headerLength, as: UInt8.self) else {
                return nil
            }
            guard !isICMPError(icmpType) else { return nil }
        }
        let quoted = packet.getSlice(at: base, length: parsed.headerLength + quotedData)!
        let icmpLength = 8 + quoted.readableBytes
        let total = 20 + icmpLength

        var out = ByteBuffer()
        out.reserveCapacity(total)
        out.writeInteger(UInt8(0x45))
        out.writeInteger(UInt8(0xc0))  // precedence "internetwork control", as routers send their errors
        out.writeInteger(UInt16(total))
        out.writeInteger(UInt16(0))  // identification
        out.writeInteger(UInt16(0))  // flags and fragment offset
        out.writeInteger(UInt8(64))  // time to live
        out.writeInteger(UInt8(1))  // ICMP
        out.writeInteger(UInt16(0))  // header checksum, below
        out.writeBytes(errorSource)
        out.writeBytes(source)
        out.setInteger(InternetChecksum.compute(out, at: 0, length: 20), at: 10)

        out.writeInteger(type)
        out.writeInteger(code)
        out.writeInteger(UInt16(0))  // ICMP checksum, below
        out.writeInteger(UInt16(0))  // unused
        out.writeInteger(nextHopMTU)
        out.writeImmutableBuffer(quoted)
        out.setInteger(InternetChecksum.compute(out, at: 20, length: icmpLength), at: 22)
        return out
    }

    /// ICMP types that are errors (RFC 792, RFC 1812 §4.3.2.7): destination unreachable, source quench,
    /// redirect, time exceeded, parameter problem.
    static func isICMPError(_ type: UInt8) -> Bool { [3, 4, 5, 11, 12].contains(type) }

    /// Not 0.0.0.0/8 ("this network"), loopback, multicast, reserved or the limited broadcast.
    static func isUnicastHost(_ address: [UInt8]) -> Bool {
        let first = address[0]
        return first != 0 && first != 127 && first < 224
    }
}
