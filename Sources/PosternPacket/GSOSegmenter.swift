import NIOCore

/// Turns what a tun device with offloads hands over (`VirtioNetHeader` + packet) into the packets a
/// wire would carry: a TCP or UDP super-packet of up to 64 KB cut into segments of `gsoSize` payload
/// bytes, each with its own IP and transport header, lengths, IPv4 identification and checksums; a
/// single packet whose transport checksum was left partial (`needsChecksum`) completed. What the
/// kernel's own software GSO would put on a wire, byte for byte: TCP sequence numbers advance by the
/// payload, FIN and PSH stay on the last segment and CWR on the first, IPv4 identifications count up
/// from the super-packet's.
///
/// The UDP channel seals each segment as a datagram of its own, and the policy, the MSS clamp and a
/// `--pcap` capture see real packets. Pure; every length the header or the packet states is checked
/// against the bytes there are, so a header that lies is refused (`Refusal`), never a crash.
public enum GSOSegmenter {
    /// Segments one super-packet may yield at most: 64 KB in segments of at least 64 bytes. A header
    /// asking for more (a tiny `gsoSize`) would turn one read into megabytes of headers.
    public static let maxSegments = 1024

    /// Why a packet from the device was not turned into packets (it is dropped and counted).
    public enum Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        /// A `gso_type` this code does not segment (UFO, or one unknown).
        case unsupportedGSOType(UInt8)
        /// Not an IP packet, or its header's lengths do not fit its bytes.
        case malformedIP
        /// The GSO type names another IP version or transport than the packet has, IPv6 with
        /// extension headers, or an IPv4 fragment.
        case gsoMismatch
        /// The transport header is shorter than its minimum or longer than the packet.
        case malformedTransport
        /// `gso_size` is 0, or so small that the segments would exceed `maxSegments`.
        case badSegmentSize(UInt16)
        /// The checksum start and offset point outside the packet or not at the transport checksum.
        case badChecksumOffsets

        public var description: String {
            switch self {
            case .unsupportedGSOType(let t): return "GSO type \(t) is not segmented"
            case .malformedIP: return "not a well-formed IP packet"
            case .gsoMismatch: return "GSO type does not match the packet"
            case .malformedTransport: return "transport header does not fit the packet"
            case .badSegmentSize(let s): return "GSO segment size \(s) is impossible"
            case .badChecksumOffsets: return "checksum offsets outside the packet"
            }
        }
    }

    static let tcp: UInt8 = 6
    static let udp: UInt8 = 17

    /// The packets `packet` (the bytes after the vnet header, from its reader index) stands for.
    public static func split(_ packet: ByteBuffer, header: VirtioNetHeader) throws(Refusal) -> [ByteBuffer] {
        var output = ByteBuffer()
        return try split(packet, header: header, into: &output)
    }

    /// `split`, with the segments written into `output` (cleared first) and returned as slices of
    /// it. A caller that passes the same buffer for every read, and lets go of the slices before the
    /// next, has its storage reused: no 64 KB allocation (with page faults to fill it) per read.
    /// Slices still held elsewhere stay intact: clearing a shared buffer allocates anew.
    public static func split(_ packet: ByteBuffer, header: VirtioNetHeader, into output: inout ByteBuffer) throws(Refusal)
        -> [ByteBuffer]
    {
        guard let gso = header.gso, gso != .udp else { throw .unsupportedGSOType(header.gsoTypeRaw) }
        guard gso != .none else {
            guard header.flags & VirtioNetHeader.needsChecksum != 0 else { return [packet] }
            return [try completeChecksum(packet, header: header)]
        }
        guard let ip = try? IPPacket(parsing: packet) else { throw .malformedIP }
        let base = packet.readerIndex
        switch (gso, ip.version) {
        case (.tcpV4, .v4), (.tcpV6, .v6):
            guard ip.transportProtocol == tcp else { throw .gsoMismatch }
        case (.udpL4, _):
            guard ip.transportProtocol == udp else { throw .gsoMismatch }
        default:
            throw .gsoMismatch
        }
        if ip.version == .v4 {
            // A fragment has no transport header to repeat (and the kernel never segments one).
            guard let fragment = packet.getInteger(at: base + 6, as: UInt16.self), fragment & 0x3fff == 0 else {
                throw .gsoMismatch
            }
        }
        let isTCP = ip.transportProtocol == tcp
        let transport = base + ip.headerLength
        let transportHeader: Int
        if isTCP {
            guard ip.totalLength - ip.headerLength >= 20, let offset = packet.getInteger(at: transport + 12, as: UInt8.self)
            else { throw .malformedTransport }
            transportHeader = Int(offset >> 4) * 4
            guard transportHeader >= 20, ip.headerLength + transportHeader <= ip.totalLength else { throw .malformedTransport }
        } else {
            transportHeader = 8
            guard ip.headerLength + transportHeader <= ip.totalLength else { throw .malformedTransport }
        }
        if header.flags & VirtioNetHeader.needsChecksum != 0 {
            guard Int(header.checksumStart) == ip.headerLength, Int(header.checksumOffset) == (isTCP ? 16 : 6) else {
                throw .badChecksumOffsets
            }
        }
        let headers = ip.headerLength + transportHeader
        let payload = ip.totalLength - headers
        let size = Int(header.gsoSize)
        guard size > 0 else { throw .badSegmentSize(header.gsoSize) }
        let count = max(1, (payload + size - 1) / size)
        guard count <= maxSegments else { throw .badSegmentSize(header.gsoSize) }

        // One buffer for all segments, handed out as slices: at most one allocation per super-packet.
        output.clear(minimumCapacity: count * headers + payload)
        let ipID = ip.version == .v4 ? packet.getInteger(at: base + 4, as: UInt16.self)! : 0
        let sequence = isTCP ? packet.getInteger(at: transport + 4, as: UInt32.self)! : 0
        let flags = isTCP ? packet.getInteger(at: transport + 13, as: UInt8.self)! : 0
        packet.withUnsafeReadableBytes { raw in
            for i in 0..<count {
                let chunkStart = headers + i * size
                let chunk = min(size, max(0, payload - i * size))
                let start = output.writerIndex
                output.writeBytes(UnsafeRawBufferPointer(rebasing: raw[0..<headers]))
                output.writeBytes(UnsafeRawBufferPointer(rebasing: raw[chunkStart..<(chunkStart + chunk)]))
                let t = start + ip.headerLength
                let transportLength = transportHeader + chunk
                if ip.version == .v4 {
                    output.setInteger(UInt16(headers + chunk), at: start + 2)
                    output.setInteger(ipID &+ UInt16(truncatingIfNeeded: i), at: start + 4)
                    output.setInteger(UInt16(0), at: start + 10)
                    output.setInteger(~InternetChecksum.sum(output, at: start, length: ip.headerLength), at: start + 10)
                } else {
                    output.setInteger(UInt16(transportLength), at: start + 4)
                }
                let checksumAt: Int
                if isTCP {
                    output.setInteger(sequence &+ UInt32(truncatingIfNeeded: i * size), at: t + 4)
                    var f = flags
                    if i < count - 1 { f &= ~0x09 }  // FIN and PSH end the data: last segment only
                    if i > 0 { f &= ~0x80 }  // CWR answers once: first segment only
                    output.setInteger(f, at: t + 13)
                    checksumAt = t + 16
                } else {
                    output.setInteger(UInt16(transportLength), at: t + 4)
                    checksumAt = t + 6
                }
                output.setInteger(UInt16(0), at: checksumAt)
                let pseudo = InternetChecksum.pseudoHeaderSum(
                    output, ipStart: start, isV6: ip.version == .v6, transportProtocol: ip.transportProtocol,
                    transportLength: transportLength)
                var sum = ~InternetChecksum.sum(output, at: t, length: transportLength, initial: pseudo)
                if !isTCP, sum == 0 { sum = 0xffff }  // UDP's 0 means "no checksum"
                output.setInteger(sum, at: checksumAt)
            }
        }
        // Sliced once everything is written: a slice taken earlier would share the storage and make
        // every later write copy it.
        var segments: [ByteBuffer] = []
        segments.reserveCapacity(count)
        var start = output.readerIndex
        for i in 0..<count {
            let length = headers + min(size, max(0, payload - i * size))
            segments.append(output.getSlice(at: start, length: length)!)
            start += length
        }
        return segments
    }

    /// A single packet whose transport checksum holds the pseudo-header's sum only: adds the bytes
    /// from `checksumStart` to the end of the IP packet and stores the complement.
    static func completeChecksum(_ packet: ByteBuffer, header: VirtioNetHeader) throws(Refusal) -> ByteBuffer {
        guard let ip = try? IPPacket(parsing: packet) else { throw .malformedIP }
        let start = Int(header.checksumStart)
        let field = start + Int(header.checksumOffset)
        guard start >= ip.headerLength, field + 2 <= ip.totalLength else { throw .badChecksumOffsets }
        var packet = packet
        let base = packet.readerIndex
        var sum = ~InternetChecksum.sum(packet, at: base + start, length: ip.totalLength - start)
        if ip.transportProtocol == udp, sum == 0 { sum = 0xffff }
        packet.setInteger(sum, at: base + field)
        return packet
    }
}
