/// How a packet captured after the tunnel is held against the packet that was injected, for replay in
/// TUN mode. Between the two, the path (in the lab: the mediator's host forwarding between the tun
/// device and the LAN) is a router and a tunnel whose ends clamp TCP's MSS, and nothing else: no NAT.
/// So every byte must survive — version, header length and options, TOS or traffic class, flow
/// label, total or payload length, identification, flags and fragment offset, protocol or next
/// header, extension headers, both (rewritten) addresses, and the whole payload including transport
/// checksums and any quoted header — except what a router and the clamp must change:
/// - the TTL (IPv4) or hop limit (IPv6), which must arrive lowered by exactly `hops`;
/// - IPv4's header checksum, which must be valid for the new TTL (it is recomputed, not compared);
/// - with `mtu` given, the MSS option of a TCP SYN may arrive lowered to exactly the clamp (IPv4 the
///   MTU less 40, IPv6 the MTU less 60: the headers without options), never raised and never to
///   another value; then, and only then, the TCP checksum may differ, and it must be valid over the
///   received segment and its pseudo header.
public enum PacketComparison {
    /// The offset of the first byte that breaks the rules above (the length of the shorter packet when
    /// one is a prefix of the other); nil when the received packet is the sent one. `mtu`: the tunnel
    /// devices' MTU, whose MSS clamp is allowed; nil allows none.
    public static func firstDifference(sent: [UInt8], received: [UInt8], hops: Int, mtu: Int? = nil) -> Int? {
        let v6 = sent.first.map { $0 >> 4 == 6 } ?? false
        let hopAt = v6 ? 7 : 8
        let mss = mtu.flatMap { sent.count == received.count ? MSSOption(sent, mtu: $0) : nil }
        let common = min(sent.count, received.count)
        for i in 0..<common {
            if i == hopAt {
                if Int(received[i]) != Int(sent[i]) - hops { return i }
                continue
            }
            if !v6 && (i == 10 || i == 11) { continue }
            if let mss, mss.covers(i) { continue }
            if sent[i] != received[i] { return i }
        }
        if sent.count != received.count { return common }
        if !v6 && received.count >= 20 {
            let ihl = Int(received[0] & 0x0f) * 4
            if ihl >= 20, received.count >= ihl, PacketSynthesizer.checksum(Array(received[0..<ihl])) != 0 { return 10 }
        }
        if let mss { return mss.check(sent: sent, received: received) }
        return nil
    }

    /// Where a SYN's MSS option and its TCP checksum sit, and the value the clamp lowers it to.
    struct MSSOption {
        var option: Int
        var checksum: Int
        var clamp: Int

        /// nil unless `packet` is a whole TCP segment (not a later fragment, not cut) with SYN and a
        /// well-formed MSS option.
        init?(_ packet: [UInt8], mtu: Int) {
            guard let ip = try? IPDatagram(frame: packet, at: 0), ip.transportProtocol == 6, !ip.isCut,
                ip.fragment == nil || ip.fragment?.offset == 0
            else { return nil }
            let t = ip.payload.startIndex
            guard packet.count >= t + 20, packet[t + 13] & 0x02 != 0 else { return nil }
            let end = t + Int(packet[t + 12] >> 4) * 4
            guard end >= t + 20, end <= packet.count else { return nil }
            var i = t + 20
            while i < end {
                switch packet[i] {
                case 0: return nil
                case 1: i += 1
                default:
                    guard i + 1 < end, packet[i + 1] >= 2, i + Int(packet[i + 1]) <= end else { return nil }
                    if packet[i] == 2 {
                        guard packet[i + 1] == 4 else { return nil }
                        option = i + 2
                        checksum = t + 16
                        clamp = mtu - (ip.version == 6 ? 60 : 40)
                        return
                    }
                    i += Int(packet[i + 1])
                }
            }
            return nil
        }

        func covers(_ i: Int) -> Bool { i == option || i == option + 1 || i == checksum || i == checksum + 1 }

        /// The offset that breaks the rule, or nil: the same MSS with the same checksum, or the MSS
        /// lowered to the clamp with a valid checksum.
        func check(sent: [UInt8], received: [UInt8]) -> Int? {
            let before = Int(sent[option]) << 8 | Int(sent[option + 1])
            let after = Int(received[option]) << 8 | Int(received[option + 1])
            if before == after {
                return sent[checksum] == received[checksum] && sent[checksum + 1] == received[checksum + 1] ? nil : checksum
            }
            guard after == clamp, before > clamp else { return option }
            return PacketComparison.transportChecksumIsValid(received) ? nil : checksum
        }
    }

    /// Whether the TCP, UDP or ICMPv6 checksum of a whole, unfragmented packet is right over its
    /// pseudo header (IPv4 or IPv6).
    public static func transportChecksumIsValid(_ packet: [UInt8]) -> Bool {
        guard let ip = try? IPDatagram(frame: packet, at: 0), !ip.isCut, ip.fragment == nil else { return false }
        let segment = Array(ip.payload)
        let length = segment.count
        var pseudo = ip.source.bytes + ip.destination.bytes
        if ip.version == 6 {
            pseudo += PacketSynthesizer.be32(UInt32(length))
            pseudo += [0, 0, 0, ip.transportProtocol]
        } else {
            pseudo += [0, ip.transportProtocol]
            pseudo += PacketSynthesizer.be16(length)
        }
        return PacketSynthesizer.checksum(pseudo + segment) == 0
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
    public static func match(expected: [[UInt8]], received: [[UInt8]], hops: Int, mtu: Int? = nil, window: Int = 64) -> (
        outcomes: [Outcome], unexpected: [Int]
    ) {
        var outcomes: [Outcome] = []
        var taken = Set<Int>()
        var next = 0
        for packet in expected {
            var found: Int?
            var k = next
            while k < received.count && k < next + window {
                if firstDifference(sent: packet, received: received[k], hops: hops, mtu: mtu) == nil {
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
                let difference = next < received.count ? firstDifference(sent: packet, received: received[next], hops: hops, mtu: mtu) : 0
                outcomes.append(Outcome(matched: nil, difference: difference ?? 0))
            }
        }
        let unexpected = received.indices.filter { !taken.contains($0) }
        return (outcomes, unexpected)
    }
}
