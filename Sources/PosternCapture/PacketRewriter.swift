/// Rewrites the addresses of a recorded IPv4 or IPv6 packet to the lab's, keeping every checksum
/// right, for replay in TUN mode. The IPv4 header checksum is recomputed (IPv6 has none); transport checksums (TCP, UDP), which
/// cover a pseudo header with the addresses, are updated incrementally (RFC 1624, eqn. 3), so a
/// packet whose recorded checksum was wrong stays wrong by the same amount, as it was recorded. An
/// ICMP error quotes the packet it is about: the quoted header's addresses go through the same map
/// (the quote then names the lab's hosts consistently), with its header and transport checksums and
/// the ICMP checksum updated to match. Non-first fragments carry no transport header: only their IP
/// header changes. Addresses the map does not name are left as recorded.
///
/// IPv6 the same way: both addresses are mapped; TCP, UDP and ICMPv6 checksums all cover a pseudo
/// header with them and are adjusted (the transport header found after any extension headers); an
/// ICMPv6 error (destination unreachable, packet too big, time exceeded, parameter problem) has its
/// quoted header mapped, the quote's transport checksum adjusted, and its own checksum adjusted by
/// both changes. A routing header's addresses are left as recorded.
public enum PacketRewriter {
    /// ICMP types whose body quotes an IP header: unreachable, source quench, redirect, time exceeded,
    /// parameter problem.
    static let icmpErrors: Set<UInt8> = [3, 4, 5, 11, 12]

    /// The rewritten packet, or nil when `packet` is not a whole IPv4 header (the caller has parsed it
    /// already; nil is the no-crash answer to anything else). `map` takes 4-byte addresses to 4-byte
    /// addresses.
    public static func rewrite(_ packet: [UInt8], map: [[UInt8]: [UInt8]]) -> [UInt8]? {
        if packet.first.map({ $0 >> 4 == 6 }) == true { return rewrite6(packet, map: map) }
        guard packet.count >= 20, packet[0] >> 4 == 4 else { return nil }
        let ihl = Int(packet[0] & 0x0f) * 4
        guard ihl >= 20, packet.count >= ihl else { return nil }
        var out = packet
        let changed = rewriteHeader(&out, at: 0, map: map, fullChecksum: true)
        let fragmentOffset = (Int(packet[6]) << 8 | Int(packet[7])) & 0x1fff
        guard fragmentOffset == 0 else { return out }
        let t = ihl
        switch packet[9] {
        case 6 where out.count >= t + 18:
            fix(&out, checksumAt: t + 16, old: changed.old, new: changed.new, zeroMeansNone: false)
        case 17 where out.count >= t + 8:
            fix(&out, checksumAt: t + 6, old: changed.old, new: changed.new, zeroMeansNone: true)
        case 1 where out.count >= t + 8 + 20 && icmpErrors.contains(packet[t]):
            let inner = t + 8
            let before = Array(out[t...])
            let innerIHL = Int(out[inner] & 0x0f) * 4
            guard out[inner] >> 4 == 4, innerIHL >= 20, out.count >= inner + innerIHL else { return out }
            let quoted = rewriteHeader(&out, at: inner, map: map, fullChecksum: false)
            let innerOffset = (Int(out[inner + 6]) << 8 | Int(out[inner + 7])) & 0x1fff
            let q = inner + innerIHL
            if innerOffset == 0 {
                switch out[inner + 9] {
                case 6 where out.count >= q + 18:
                    fix(&out, checksumAt: q + 16, old: quoted.old, new: quoted.new, zeroMeansNone: false)
                case 17 where out.count >= q + 8:
                    fix(&out, checksumAt: q + 6, old: quoted.old, new: quoted.new, zeroMeansNone: true)
                default: break
                }
            }
            // The ICMP checksum covers the whole message: adjust it by everything the quote changed.
            fix(&out, checksumAt: t + 2, old: before, new: Array(out[t...]), zeroMeansNone: false)
        default:
            break
        }
        return out
    }

    /// ICMPv6 types whose body quotes the packet it is about.
    static let icmp6Errors: Set<UInt8> = [1, 2, 3, 4]

    /// The IPv6 half of `rewrite`: nil unless `packet` parses as IPv6 (extension headers included).
    static func rewrite6(_ packet: [UInt8], map: [[UInt8]: [UInt8]]) -> [UInt8]? {
        guard let ip = try? IPDatagram(frame: packet, at: 0), ip.version == 6 else { return nil }
        var out = packet
        let changed = mapAddresses6(&out, at: 0, map: map)
        if let fragment = ip.fragment, fragment.offset != 0 { return out }
        let t = ip.payload.startIndex
        switch ip.transportProtocol {
        case 6 where out.count >= t + 18:
            fix(&out, checksumAt: t + 16, old: changed.old, new: changed.new, zeroMeansNone: false)
        case 17 where out.count >= t + 8:
            fix(&out, checksumAt: t + 6, old: changed.old, new: changed.new, zeroMeansNone: true)
        case 58 where out.count >= t + 4:
            let before = Array(out[t...])
            if out.count >= t + 8 + 40 && icmp6Errors.contains(out[t]) && out[t + 8] >> 4 == 6 {
                let inner = t + 8
                let quoted = mapAddresses6(&out, at: inner, map: map)
                // The quote is cut where the error's sender chose: its transport header may be whole.
                if let q = try? IPDatagram(frame: out, at: inner), q.fragment == nil || q.fragment?.offset == 0 {
                    let s = q.payload.startIndex
                    switch q.transportProtocol {
                    case 6 where out.count >= s + 18:
                        fix(&out, checksumAt: s + 16, old: quoted.old, new: quoted.new, zeroMeansNone: false)
                    case 17 where out.count >= s + 8:
                        fix(&out, checksumAt: s + 6, old: quoted.old, new: quoted.new, zeroMeansNone: true)
                    case 58 where out.count >= s + 4:
                        fix(&out, checksumAt: s + 2, old: quoted.old, new: quoted.new, zeroMeansNone: false)
                    default: break
                    }
                }
            }
            // The ICMPv6 checksum covers the pseudo header's addresses and the whole message.
            fix(&out, checksumAt: t + 2, old: changed.old + before, new: changed.new + Array(out[t...]), zeroMeansNone: false)
        default:
            break
        }
        return out
    }

    /// Maps the source and destination of the IPv6 header at `at` (40 bytes there are checked by the
    /// caller's parse); returns the old and new address bytes.
    private static func mapAddresses6(_ p: inout [UInt8], at: Int, map: [[UInt8]: [UInt8]]) -> (old: [UInt8], new: [UInt8]) {
        let old = Array(p[(at + 8)..<(at + 40)])
        let source = map[Array(old[0..<16])] ?? Array(old[0..<16])
        let destination = map[Array(old[16..<32])] ?? Array(old[16..<32])
        let new = source + destination
        p.replaceSubrange((at + 8)..<(at + 40), with: new)
        return (old, new)
    }

    /// Maps the source and destination of the IPv4 header at `at`; returns the old and new address
    /// bytes (what a pseudo header held). The checksum is recomputed (`fullChecksum`) or, for a quoted
    /// header whose recorded checksum should keep its recorded error, if any, adjusted.
    private static func rewriteHeader(_ p: inout [UInt8], at: Int, map: [[UInt8]: [UInt8]], fullChecksum: Bool) -> (
        old: [UInt8], new: [UInt8]
    ) {
        let old = Array(p[(at + 12)..<(at + 20)])
        let source = map[Array(old[0..<4])] ?? Array(old[0..<4])
        let destination = map[Array(old[4..<8])] ?? Array(old[4..<8])
        let new = source + destination
        p.replaceSubrange((at + 12)..<(at + 20), with: new)
        if fullChecksum {
            let ihl = Int(p[at] & 0x0f) * 4
            p[at + 10] = 0
            p[at + 11] = 0
            let sum = PacketSynthesizer.checksum(Array(p[at..<(at + ihl)]))
            p[at + 10] = UInt8(sum >> 8)
            p[at + 11] = UInt8(sum & 0xff)
        } else {
            fix(&p, checksumAt: at + 10, old: old, new: new, zeroMeansNone: false)
        }
        return (old, new)
    }

    private static func fix(_ p: inout [UInt8], checksumAt at: Int, old: [UInt8], new: [UInt8], zeroMeansNone: Bool) {
        let current = UInt16(p[at]) << 8 | UInt16(p[at + 1])
        // UDP over IPv4: a zero checksum means none was computed; it stays none.
        if zeroMeansNone && current == 0 { return }
        var updated = adjust(current, old: old, new: new)
        if zeroMeansNone && updated == 0 { updated = 0xffff }
        p[at] = UInt8(updated >> 8)
        p[at + 1] = UInt8(updated & 0xff)
    }

    /// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over 16-bit words. `old` and `new` are the same
    /// length and start at an even offset of what the checksum covers (an odd last byte is the high
    /// half of a word, as in RFC 1071).
    public static func adjust(_ checksum: UInt16, old: [UInt8], new: [UInt8]) -> UInt16 {
        precondition(old.count == new.count, "a rewrite keeps the length")
        var sum = UInt32(~checksum)
        var i = 0
        while i < old.count {
            let m = UInt16(old[i]) << 8 | (i + 1 < old.count ? UInt16(old[i + 1]) : 0)
            let m2 = UInt16(new[i]) << 8 | (i + 1 < new.count ? UInt16(new[i + 1]) : 0)
            sum &+= UInt32(~m) &+ UInt32(m2)
            sum = (sum & 0xffff) &+ (sum >> 16)
            i += 2
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) &+ (sum >> 16) }
        return ~UInt16(sum)
    }
}
