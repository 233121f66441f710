import NIOCore

/// Finishes what the kernel's offloads left undone in a frame a packet socket read with
/// PACKET_VNET_HDR (the raw LAN presence, issue 11): a checksum only seeded with the pseudo-header
/// (checksum offload; a veth peer or a local sender leaves it so), or a TCP or UDP "super-packet" of
/// up to 64 KiB that GRO merged on receive or a veth peer passed on unsegmented (GSO). Without this
/// the remote side would get bad checksums and packets larger than any MTU. The frame arrives after
/// a `struct virtio_net_hdr` (10 bytes, host byte order: little-endian here); what comes out are
/// ordinary Ethernet frames, each with complete checksums and at most `gsoSize` bytes of payload.
/// Pure; a header or frame that does not add up gives nothing (the caller counts it).
public enum ReceiveOffload {
    public static let headerLength = 10
    static let needsChecksum: UInt8 = 1
    static let gsoNone: UInt8 = 0
    static let gsoTCPv4: UInt8 = 1
    static let gsoUDPL4: UInt8 = 5
    static let gsoECN: UInt8 = 0x80

    /// The frames `buffer` (virtio_net_hdr, then an Ethernet frame) stands for; empty when it is
    /// malformed or uses an offload this does not resolve (UFO).
    public static func frames(_ buffer: ByteBuffer) -> [ByteBuffer] {
        let base = buffer.readerIndex
        guard buffer.readableBytes > headerLength + 14,
            let flags = buffer.getInteger(at: base, as: UInt8.self),
            let gsoType = buffer.getInteger(at: base + 1, as: UInt8.self),
            let gsoSize = buffer.getInteger(at: base + 4, endianness: .little, as: UInt16.self),
            let checksumStart = buffer.getInteger(at: base + 6, endianness: .little, as: UInt16.self),
            let checksumOffset = buffer.getInteger(at: base + 8, endianness: .little, as: UInt16.self)
        else { return [] }
        var frame = buffer.getSlice(at: base + headerLength, length: buffer.readableBytes - headerLength)!
        if gsoType & ~gsoECN != gsoNone, frame.getInteger(at: frame.readerIndex + 12, as: UInt16.self) == 0x86dd {
            return ipv6Segments(frame, header: VirtioNetHeader(buffer, at: base))
        }
        switch gsoType & ~gsoECN {
        case gsoNone:
            guard flags & needsChecksum != 0 else { return [frame] }
            let start = Int(checksumStart)
            let field = start + Int(checksumOffset)
            guard field + 2 <= frame.readableBytes else { return [] }
            // The field holds the folded pseudo-header sum: the checksum over the rest completes it.
            let sum = InternetChecksum.compute(frame, at: frame.readerIndex + start, length: frame.readableBytes - start)
            frame.setInteger(sum, at: frame.readerIndex + field)
            return [frame]
        case gsoTCPv4, gsoUDPL4:
            guard gsoSize > 0 else { return [] }
            return segments(frame, isTCP: gsoType & ~gsoECN == gsoTCPv4, size: Int(gsoSize))
        default:
            return []
        }
    }

    /// Cuts an IPv6 super-packet (the raw presence's IPv6 half: a veth peer's or GRO's TCPv6 or UDP
    /// segments) with `GSOSegmenter`, which TUN mode uses for the same job on a tun device: the
    /// offsets of the header count from the Ethernet header here, from the IP header there.
    static func ipv6Segments(_ frame: ByteBuffer, header: VirtioNetHeader?) -> [ByteBuffer] {
        guard var header, frame.readableBytes > 14 else { return [] }
        if header.flags & VirtioNetHeader.needsChecksum != 0 {
            guard header.checksumStart >= 14 else { return [] }
            header.checksumStart -= 14
        }
        header.headerLength = header.headerLength >= 14 ? header.headerLength - 14 : 0
        let ethernet = frame.getSlice(at: frame.readerIndex, length: 14)!
        let packet = frame.getSlice(at: frame.readerIndex + 14, length: frame.readableBytes - 14)!
        guard let segments = try? GSOSegmenter.split(packet, header: header) else { return [] }
        return segments.map { segment in
            var out = ByteBuffer()
            out.reserveCapacity(14 + segment.readableBytes)
            out.writeImmutableBuffer(ethernet)
            out.writeImmutableBuffer(segment)
            return out
        }
    }

    /// Cuts an IPv4 TCP or UDP super-packet into segments of `size` payload bytes.
    static func segments(_ frame: ByteBuffer, isTCP: Bool, size: Int) -> [ByteBuffer] {
        let f = frame.readerIndex
        guard frame.getInteger(at: f + 12, as: UInt16.self) == 0x0800,
            let first = frame.getInteger(at: f + 14, as: UInt8.self), first >> 4 == 4,
            frame.getInteger(at: f + 14 + 9, as: UInt8.self) == (isTCP ? 6 : 17)
        else { return [] }
        let ip = 14
        let ipHeader = Int(first & 0x0f) * 4
        let l4 = ip + ipHeader
        guard ipHeader >= 20, frame.readableBytes >= l4 + (isTCP ? 20 : 8) else { return [] }
        let l4Header: Int
        if isTCP {
            l4Header = Int(frame.getInteger(at: f + l4 + 12, as: UInt8.self)! >> 4) * 4
            guard l4Header >= 20, frame.readableBytes >= l4 + l4Header else { return [] }
        } else {
            l4Header = 8
        }
        let headers = l4 + l4Header
        let payload = frame.readableBytes - headers
        guard payload > 0 else { return [] }
        let id = frame.getInteger(at: f + ip + 4, as: UInt16.self)!
        let sequence = isTCP ? frame.getInteger(at: f + l4 + 4, as: UInt32.self)! : 0
        let flags = isTCP ? frame.getInteger(at: f + l4 + 13, as: UInt8.self)! : 0
        let count = (payload + size - 1) / size
        var out: [ByteBuffer] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            let offset = i * size
            let length = min(size, payload - offset)
            var s = ByteBuffer()
            s.reserveCapacity(headers + length)
            s.writeImmutableBuffer(frame.getSlice(at: f, length: headers)!)
            s.writeImmutableBuffer(frame.getSlice(at: f + headers + offset, length: length)!)
            // IPv4: its own length, the next identification, a fresh header checksum.
            s.setInteger(UInt16(ipHeader + l4Header + length), at: ip + 2)
            s.setInteger(id &+ UInt16(truncatingIfNeeded: i), at: ip + 4)
            s.setInteger(UInt16(0), at: ip + 10)
            s.setInteger(InternetChecksum.compute(s, at: ip, length: ipHeader), at: ip + 10)
            let checksumField: Int
            if isTCP {
                s.setInteger(sequence &+ UInt32(truncatingIfNeeded: offset), at: l4 + 4)
                var f = flags
                if i > 0 { f &= ~0x80 }  // CWR only on the first segment
                if i < count - 1 { f &= ~0x09 }  // FIN and PSH only on the last
                s.setInteger(f, at: l4 + 13)
                checksumField = l4 + 16
            } else {
                s.setInteger(UInt16(8 + length), at: l4 + 4)
                checksumField = l4 + 6
            }
            // Seed the field with the pseudo-header sum, then checksum the segment over it.
            let l4Length = l4Header + length
            var pseudo = UInt32(isTCP ? 6 : 17) + UInt32(l4Length)
            for k in stride(from: ip + 12, to: ip + 20, by: 2) { pseudo += UInt32(s.getInteger(at: k, as: UInt16.self)!) }
            while pseudo >> 16 != 0 { pseudo = (pseudo & 0xffff) + (pseudo >> 16) }
            s.setInteger(UInt16(pseudo), at: checksumField)
            var sum = InternetChecksum.compute(s, at: l4, length: l4Length)
            if !isTCP && sum == 0 { sum = 0xffff }  // UDP: 0 means "no checksum"
            s.setInteger(sum, at: checksumField)
            out.append(s)
        }
        return out
    }
}
