import NIOCore

/// Partial sums for checksums computed over several pieces (pseudo-header, header, payload) and for
/// the per-packet work of segmentation and coalescing, where the byte-wise `compute` would cost more
/// than the cipher: eight bytes a step.
extension InternetChecksum {
    /// The ones' complement sum of `bytes` as big-endian 16-bit words (an odd last byte padded with
    /// zero), folded to 16 bits and not inverted, added to `initial` (another such sum). Adding sums
    /// of consecutive pieces gives the sum of the whole as long as every piece but the last has an
    /// even length.
    public static func sum(_ bytes: UnsafeRawBufferPointer, initial: UInt16 = 0) -> UInt16 {
        // Summing host-order (little-endian) words and swapping the folded result gives the big-endian
        // sum (RFC 1071 §2(B)): the byte order of the words does not change ones' complement addition.
        var acc: UInt64 = 0
        var i = 0
        let n = bytes.count
        if let base = bytes.baseAddress {
            // 32 bytes a round into four sums that do not wait for each other: TUN mode sums every
            // packet's TCP payload (cutting super-packets, checking segments before merging them),
            // and one chain of additions was a few percent of its CPU time.
            var a1: UInt64 = 0
            var a2: UInt64 = 0
            var a3: UInt64 = 0
            while i + 32 <= n {
                let w0 = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                let w1 = base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                let w2 = base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
                let w3 = base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
                acc &+= (w0 & 0xffff_ffff) &+ (w0 >> 32)
                a1 &+= (w1 & 0xffff_ffff) &+ (w1 >> 32)
                a2 &+= (w2 & 0xffff_ffff) &+ (w2 >> 32)
                a3 &+= (w3 & 0xffff_ffff) &+ (w3 >> 32)
                i += 32
            }
            // Each sum grows by less than 2^33 a round: no overflow below 2^31 rounds (64 GiB).
            acc = acc &+ a1 &+ a2 &+ a3
            while i + 8 <= n {
                let w = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                acc &+= (w & 0xffff_ffff) &+ (w >> 32)
                i += 8
            }
            while i + 2 <= n {
                acc &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt16.self))
                i += 2
            }
            if i < n {
                // The odd byte is the high byte of a big-endian word: the low one of a host word here.
                #if _endian(little)
                    acc &+= UInt64(base.load(fromByteOffset: i, as: UInt8.self))
                #else
                    acc &+= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) << 8
                #endif
            }
        }
        while acc >> 16 != 0 { acc = (acc & 0xffff) &+ (acc >> 16) }
        let host = UInt16(truncatingIfNeeded: acc)
        #if _endian(little)
            return add(host.byteSwapped, initial)
        #else
            return add(host, initial)
        #endif
    }

    /// `sum` over `length` bytes at `offset` of `buffer` (bounds checked: out of range sums nothing).
    public static func sum(_ buffer: ByteBuffer, at offset: Int, length: Int, initial: UInt16 = 0) -> UInt16 {
        guard length >= 0, offset >= buffer.readerIndex, offset + length <= buffer.writerIndex else { return initial }
        return buffer.withUnsafeReadableBytes { raw in
            let start = offset - buffer.readerIndex
            return sum(UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]), initial: initial)
        }
    }

    /// Ones' complement addition of two 16-bit sums.
    public static func add(_ a: UInt16, _ b: UInt16) -> UInt16 {
        let s = UInt32(a) + UInt32(b)
        return UInt16(truncatingIfNeeded: (s & 0xffff) + (s >> 16))
    }

    /// The sum of the TCP/UDP pseudo-header (RFC 793 / RFC 8200 §8.1) of the IP packet at `ipStart`:
    /// its source and destination address, `transportProtocol` and `transportLength`. `isV6` picks the
    /// address offsets (12/4 bytes for IPv4, 8/16 for IPv6).
    public static func pseudoHeaderSum(
        _ packet: ByteBuffer, ipStart: Int, isV6: Bool, transportProtocol: UInt8, transportLength: Int
    ) -> UInt16 {
        let addresses = isV6 ? sum(packet, at: ipStart + 8, length: 32) : sum(packet, at: ipStart + 12, length: 8)
        let length = UInt32(transportLength)
        var s = UInt32(addresses) + UInt32(transportProtocol) + (length & 0xffff) + (length >> 16)
        while s >> 16 != 0 { s = (s & 0xffff) + (s >> 16) }
        return UInt16(s)
    }
}
