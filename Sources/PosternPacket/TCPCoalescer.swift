import NIOCore

/// Merges consecutive TCP segments of one flow, from a batch of IP packets bound for a tun device,
/// into one super-packet and its `VirtioNetHeader`, so a device with offloads takes a whole batch in a
/// few write(2)s instead of one per packet (what Linux's GRO does on a NIC, and wireguard-go's
/// tcp_offload_linux.go on its tun device). The kernel cuts the super-packet back into the very same
/// segments when it forwards it (`GSOSegmenter` is the same cut, in Swift), so a segment joins only
/// when that cut gives it back byte for byte:
///
/// - same addresses, ports and acknowledgement number; it follows the previous one in sequence;
/// - only ACK, or ACK with PSH (a PSH ends the super-packet); SYN, FIN, RST, URG, ECE and CWR never join;
/// - the same TCP header length, options, window and urgent pointer as the first segment, and a payload
///   no larger than the first's (a smaller one ends the super-packet);
/// - IPv4 without options and not a fragment, same TOS, TTL and flags, identification one more than
///   the previous segment's; IPv6 with TCP right after the fixed header, same traffic class, flow
///   label and hop limit;
/// - a correct TCP checksum (coalescing would hide a wrong one), and 64 KB at most in all.
///
/// Everything else passes through untouched with a plain header. Segments of other flows in between
/// do not stop a flow's run; a packet of the flow that cannot join does, so nothing of one flow is
/// reordered. Pure.
public enum TCPCoalescer {
    /// One write to the device: the header to put before it and the packet.
    public struct Write {
        public var header: VirtioNetHeader
        public var packet: ByteBuffer
        /// How many of the input packets it carries.
        public var count: Int
    }

    /// The IP packet length limit of a super-packet.
    public static let maxLength = 65_535

    /// The writes that carry `packets`, in order per flow.
    public static func coalesce(_ packets: [ByteBuffer]) -> [Write] {
        var output = ByteBuffer()
        return coalesce(packets, into: &output)
    }

    /// `coalesce`, with the merged packets written into `output` (cleared first) and returned as
    /// slices of it: a caller that passes the same buffer each time and lets go of the writes before
    /// the next has its storage reused. Packets that join nothing are returned as they are.
    public static func coalesce(_ packets: [ByteBuffer], into output: inout ByteBuffer) -> [Write] {
        var groups: [Group] = []
        groups.reserveCapacity(packets.count)
        var open: [FlowKey: Int] = [:]
        for (index, packet) in packets.enumerated() {
            guard let segment = Segment(packet) else {
                groups.append(Group(first: index, segment: nil))
                continue
            }
            if let g = open[segment.key], groups[g].canAppend(segment, packet: packet, firstPacket: packets[groups[g].first]) {
                groups[g].append(segment, index: index)
                if groups[g].closed { open[segment.key] = nil }
                continue
            }
            let group = Group(first: index, segment: segment)
            groups.append(group)
            open[segment.key] = group.closed ? nil : groups.count - 1
        }
        output.clear(minimumCapacity: groups.reduce(0) { $0 + ($1.members.isEmpty ? 0 : $1.length) })
        // Every merged packet is written first and sliced after: a slice taken earlier would share the
        // storage and make every later write copy it.
        var merged: [(header: VirtioNetHeader, start: Int, length: Int)?] = []
        merged.reserveCapacity(groups.count)
        for group in groups { merged.append(group.write(packets, into: &output)) }
        var writes: [Write] = []
        writes.reserveCapacity(groups.count)
        for (group, m) in zip(groups, merged) {
            if let m {
                writes.append(
                    Write(header: m.header, packet: output.getSlice(at: m.start, length: m.length)!, count: group.members.count + 1))
            } else {
                writes.append(Write(header: .plain, packet: packets[group.first], count: 1))
            }
        }
        return writes
    }

    /// The flow a segment belongs to: addresses and ports (IPv4 addresses in the low words).
    struct FlowKey: Hashable {
        var source: (UInt64, UInt64)
        var destination: (UInt64, UInt64)
        var ports: UInt32
        var isV6: Bool

        static func == (a: FlowKey, b: FlowKey) -> Bool {
            a.source == b.source && a.destination == b.destination && a.ports == b.ports && a.isV6 == b.isV6
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(source.0)
            hasher.combine(source.1)
            hasher.combine(destination.0)
            hasher.combine(destination.1)
            hasher.combine(ports)
            hasher.combine(isV6)
        }
    }

    /// A TCP segment that may start or join a super-packet, with what the rules compare.
    struct Segment {
        var key: FlowKey
        var ipHeader: Int
        var tcpHeader: Int
        var payload: Int
        var sequence: UInt32
        var acknowledgement: UInt32
        var push: Bool
        var ipID: UInt16

        static let ack: UInt8 = 0x10
        static let psh: UInt8 = 0x08

        /// Nil for anything that cannot take part (then it is written as it is).
        init?(_ p: ByteBuffer) {
            let b = p.readerIndex
            guard let first = p.getInteger(at: b, as: UInt8.self) else { return nil }
            let total: Int
            let isV6: Bool
            switch first >> 4 {
            case 4:
                guard first == 0x45, p.readableBytes >= 40, p.getInteger(at: b + 9, as: UInt8.self) == 6,
                    let fragment = p.getInteger(at: b + 6, as: UInt16.self), fragment & 0x3fff == 0
                else { return nil }
                total = Int(p.getInteger(at: b + 2, as: UInt16.self)!)
                ipHeader = 20
                isV6 = false
                ipID = p.getInteger(at: b + 4, as: UInt16.self)!
            case 6:
                guard p.readableBytes >= 60, p.getInteger(at: b + 6, as: UInt8.self) == 6 else { return nil }
                total = 40 + Int(p.getInteger(at: b + 4, as: UInt16.self)!)
                ipHeader = 40
                isV6 = true
                ipID = 0
            default:
                return nil
            }
            guard total == p.readableBytes, total >= ipHeader + 20 else { return nil }
            let t = b + ipHeader
            tcpHeader = Int(p.getInteger(at: t + 12, as: UInt8.self)! >> 4) * 4
            guard tcpHeader >= 20, ipHeader + tcpHeader < total else { return nil }  // a payload, or nothing to merge
            let flags = p.getInteger(at: t + 13, as: UInt8.self)!
            guard flags & ~Self.psh == Self.ack else { return nil }
            push = flags & Self.psh != 0
            payload = total - ipHeader - tcpHeader
            sequence = p.getInteger(at: t + 4, as: UInt32.self)!
            acknowledgement = p.getInteger(at: t + 8, as: UInt32.self)!
            let pseudo = InternetChecksum.pseudoHeaderSum(
                p, ipStart: b, isV6: isV6, transportProtocol: 6, transportLength: total - ipHeader)
            guard InternetChecksum.sum(p, at: t, length: total - ipHeader, initial: pseudo) == 0xffff else { return nil }
            func words(_ at: Int, _ n: Int) -> (UInt64, UInt64) {
                n == 4
                    ? (0, UInt64(p.getInteger(at: at, as: UInt32.self)!))
                    : (p.getInteger(at: at, as: UInt64.self)!, p.getInteger(at: at + 8, as: UInt64.self)!)
            }
            key = FlowKey(
                source: words(b + (isV6 ? 8 : 12), isV6 ? 16 : 4), destination: words(b + (isV6 ? 24 : 16), isV6 ? 16 : 4),
                ports: p.getInteger(at: t, as: UInt32.self)!, isV6: isV6)
        }
    }

    /// A run of segments of one flow (or a lone packet that takes no part: `segment` nil).
    struct Group {
        var first: Int
        var segment: Segment?
        var members: [Int] = []
        var nextSequence: UInt32 = 0
        var nextID: UInt16 = 0
        var length = 0
        var closed = true
        var push = false

        init(first: Int, segment: Segment?) {
            self.first = first
            self.segment = segment
            guard let segment else { return }
            nextSequence = segment.sequence &+ UInt32(segment.payload)
            nextID = segment.ipID &+ 1
            length = segment.ipHeader + segment.tcpHeader + segment.payload
            push = segment.push
            closed = segment.push
        }

        func canAppend(_ s: Segment, packet: ByteBuffer, firstPacket: ByteBuffer) -> Bool {
            guard !closed, let f = segment, s.sequence == nextSequence, s.acknowledgement == f.acknowledgement,
                s.tcpHeader == f.tcpHeader, s.payload <= f.payload, length + s.payload <= TCPCoalescer.maxLength,
                s.key.isV6 || s.ipID == nextID
            else { return false }
            return Self.sameHeaders(firstPacket, packet, segment: f)
        }

        /// Whether the headers of `a` and `b` agree in everything the kernel's cut repeats: IP fields
        /// but lengths, identification and checksum; TCP fields but sequence, checksum and PSH.
        static func sameHeaders(_ a: ByteBuffer, _ b: ByteBuffer, segment f: Segment) -> Bool {
            let ia = a.readerIndex
            let ib = b.readerIndex
            if f.key.isV6 {
                // Version, traffic class, flow label; then hop limit.
                guard a.getInteger(at: ia, as: UInt32.self) == b.getInteger(at: ib, as: UInt32.self),
                    a.getInteger(at: ia + 7, as: UInt8.self) == b.getInteger(at: ib + 7, as: UInt8.self)
                else { return false }
            } else {
                // TOS; flags and fragment offset; TTL.
                guard a.getInteger(at: ia + 1, as: UInt8.self) == b.getInteger(at: ib + 1, as: UInt8.self),
                    a.getInteger(at: ia + 6, as: UInt16.self) == b.getInteger(at: ib + 6, as: UInt16.self),
                    a.getInteger(at: ia + 8, as: UInt8.self) == b.getInteger(at: ib + 8, as: UInt8.self)
                else { return false }
            }
            let ta = ia + f.ipHeader
            let tb = ib + f.ipHeader
            // Data offset and flags but PSH, window; urgent pointer; options.
            guard
                a.getInteger(at: ta + 12, as: UInt32.self)! | 0x0008_0000 == b.getInteger(at: tb + 12, as: UInt32.self)! | 0x0008_0000,
                a.getInteger(at: ta + 18, as: UInt16.self) == b.getInteger(at: tb + 18, as: UInt16.self)
            else { return false }
            let options = f.tcpHeader - 20
            guard options > 0 else { return true }
            return a.withUnsafeReadableBytes { ra in
                b.withUnsafeReadableBytes { rb in
                    let oa = f.ipHeader + 20
                    return ra[oa..<(oa + options)].elementsEqual(rb[oa..<(oa + options)])
                }
            }
        }

        mutating func append(_ s: Segment, index: Int) {
            members.append(index)
            nextSequence = s.sequence &+ UInt32(s.payload)
            nextID &+= 1
            length += s.payload
            push = s.push
            // A smaller segment or PSH ends the run: the cut gives equal segments but the last.
            if s.push || s.payload < segment!.payload { closed = true }
        }

        /// Appends the merged packet to `out`; nil for a group of one, which is written as it is.
        func write(_ packets: [ByteBuffer], into out: inout ByteBuffer) -> (header: VirtioNetHeader, start: Int, length: Int)? {
            guard let f = segment, !members.isEmpty else { return nil }
            let s = out.writerIndex
            out.writeImmutableBuffer(packets[first])
            let headers = f.ipHeader + f.tcpHeader
            for m in members {
                let p = packets[m]
                out.writeImmutableBuffer(p.getSlice(at: p.readerIndex + headers, length: p.readableBytes - headers)!)
            }
            if f.key.isV6 {
                out.setInteger(UInt16(length - 40), at: s + 4)
            } else {
                out.setInteger(UInt16(length), at: s + 2)
                out.setInteger(UInt16(0), at: s + 10)
                out.setInteger(~InternetChecksum.sum(out, at: s, length: 20), at: s + 10)
            }
            let t = f.ipHeader
            if push { out.setInteger(out.getInteger(at: s + t + 13, as: UInt8.self)! | Segment.psh, at: s + t + 13) }
            // The kernel finishes the checksum of each segment it cuts: it wants the pseudo-header's
            // sum (over the whole TCP length) there, not inverted.
            out.setInteger(
                InternetChecksum.pseudoHeaderSum(out, ipStart: s, isV6: f.key.isV6, transportProtocol: 6, transportLength: length - t),
                at: s + t + 16)
            let header = VirtioNetHeader(
                flags: VirtioNetHeader.needsChecksum, gso: f.key.isV6 ? .tcpV6 : .tcpV4, headerLength: UInt16(headers),
                gsoSize: UInt16(f.payload), checksumStart: UInt16(t), checksumOffset: 16)
            return (header, s, length)
        }
    }
}
