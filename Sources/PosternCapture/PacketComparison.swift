/// How a packet captured after the tunnel is held against the packet that was injected, for replay in
/// TUN mode. Between the two, the path (in the lab: the mediator's host forwarding between the tun
/// device and the LAN) is a router and nothing else: no NAT, no MSS clamp for what is replayed. So
/// every byte must survive — version, header length and options, TOS, total length, identification,
/// flags and fragment offset, protocol, both (rewritten) addresses, and the whole payload including
/// transport checksums and any quoted header — except the two fields a router must change: the TTL,
/// which must arrive lowered by exactly `hops`, and the header checksum, which must be valid for the
/// new TTL (it is recomputed, not compared).
public enum PacketComparison {
    /// The offset of the first byte that breaks the rules above (the length of the shorter packet when
    /// one is a prefix of the other); nil when the received packet is the sent one.
    public static func firstDifference(sent: [UInt8], received: [UInt8], hops: Int) -> Int? {
        let common = min(sent.count, received.count)
        for i in 0..<common {
            switch i {
            case 8:
                if Int(received[8]) != Int(sent[8]) - hops { return 8 }
            case 10, 11:
                continue
            default:
                if sent[i] != received[i] { return i }
            }
        }
        if sent.count != received.count { return common }
        if received.count >= 20 {
            let ihl = Int(received[0] & 0x0f) * 4
            if ihl >= 20, received.count >= ihl, PacketSynthesizer.checksum(Array(received[0..<ihl])) != 0 { return 10 }
        }
        return nil
    }

    /// One expected packet's fate.
    public struct Outcome: Hashable, Sendable {
        /// Index in `received` of the packet that matched it.
        public var matched: Int?
        /// When unmatched: where it first differs from the packet that arrived in its place (0 when
        /// nothing arrived in its place).
        public var difference: Int?
    }

    /// Matches the expected packets, in order, against what arrived, in order: each expected packet
    /// takes the first identical packet not yet taken after the previous match (within `window`
    /// packets, so a lost packet costs only itself). Returns one outcome per expected packet and the
    /// indices of received packets nothing expected.
    public static func match(expected: [[UInt8]], received: [[UInt8]], hops: Int, window: Int = 64) -> (
        outcomes: [Outcome], unexpected: [Int]
    ) {
        var outcomes: [Outcome] = []
        var taken = Set<Int>()
        var next = 0
        for packet in expected {
            var found: Int?
            var k = next
            while k < received.count && k < next + window {
                if firstDifference(sent: packet, received: received[k], hops: hops) == nil {
                    found = k
                    break
                }
                k += 1
            }
            if let found {
                outcomes.append(Outcome(matched: found, difference: nil))
                taken.insert(found)
                next = found + 1
            } else {
                let difference = next < received.count ? firstDifference(sent: packet, received: received[next], hops: hops) : 0
                outcomes.append(Outcome(matched: nil, difference: difference ?? 0))
            }
        }
        let unexpected = received.indices.filter { !taken.contains($0) }
        return (outcomes, unexpected)
    }
}
