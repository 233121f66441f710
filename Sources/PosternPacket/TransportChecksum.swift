import NIOCore

/// Checksums of upper-layer protocols over IPv6's pseudo-header (RFC 8200 §8.1): TCP's after MSS
/// clamping, ICMPv6's in the "packet too big" TUN mode sends. Pure.
public enum TransportChecksum {
    /// The checksum of the `length` bytes at `upperLayer` (their checksum field zeroed by the caller),
    /// with the pseudo-header taken from the IPv6 header at `ipBase`: source, destination, the
    /// upper-layer length as 32 bits, three zero bytes and `nextHeader`.
    public static func ipv6(_ packet: ByteBuffer, ipBase: Int, upperLayer: Int, length: Int, nextHeader: UInt8) -> UInt16 {
        var pseudo = ByteBuffer()
        pseudo.reserveCapacity(40 + length)
        pseudo.writeBytes(packet.getBytes(at: ipBase + 8, length: 32)!)
        pseudo.writeInteger(UInt32(length))
        pseudo.writeBytes([0, 0, 0, nextHeader])
        pseudo.writeBytes(packet.getBytes(at: upperLayer, length: length)!)
        return InternetChecksum.compute(pseudo, at: pseudo.readerIndex, length: pseudo.readableBytes)
    }
}
