import NIOCore

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit
/// words. IPv4 headers carry it; MSS clamping and ICMP errors will update and compute it.
public enum InternetChecksum {
    /// The checksum of `length` bytes at `offset` of `buffer` (an odd last byte is padded with zero).
    /// Over a header that holds its own correct checksum, the result is 0.
    public static func compute(_ buffer: ByteBuffer, at offset: Int, length: Int) -> UInt16 {
        var sum: UInt32 = 0
        buffer.withUnsafeReadableBytes { raw in
            let start = offset - buffer.readerIndex
            var i = start
            let end = start + length
            while i + 1 < end {
                sum &+= UInt32(raw[i]) << 8 | UInt32(raw[i + 1])
                i += 2
            }
            if i < end { sum &+= UInt32(raw[i]) << 8 }
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) &+ (sum >> 16) }
        return ~UInt16(truncatingIfNeeded: sum)
    }

    /// Whether the IPv4 header at the buffer's reader index (`headerLength` bytes) has a correct
    /// header checksum.
    public static func isValidIPv4Header(_ packet: ByteBuffer, headerLength: Int) -> Bool {
        guard packet.readableBytes >= headerLength else { return false }
        return sum(packet, at: packet.readerIndex, length: headerLength) == 0xffff
    }
}
