/// The Linux capabilities a process holds, read from the `CapEff:` line of `/proc/self/status`, and
/// the ICMP datagram socket permission of `net.ipv4.ping_group_range`: what the mediator reports in
/// ENVIRONMENT and names when it must refuse a raw feature (docs/protocol.md §11). Pure: parses text.
public struct ProcessCapabilities: Hashable, Sendable {
    /// The effective set, bit N = capability N (capabilities(7)).
    public var effective: UInt64

    public static let netAdminBit = 12
    public static let netRawBit = 13

    public init(effective: UInt64) { self.effective = effective }

    /// From the text of `/proc/self/status`; nil when it has no readable `CapEff:` line.
    public init?(status: String) {
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).trimmingCharacters(in: " \t")
            guard !hex.isEmpty, hex.count <= 16, let v = UInt64(hex, radix: 16) else { return nil }
            self.effective = v
            return
        }
        return nil
    }

    public var hasNetAdmin: Bool { effective & (1 << Self.netAdminBit) != 0 }
    public var hasNetRaw: Bool { effective & (1 << Self.netRawBit) != 0 }

    /// `net.ipv4.ping_group_range` ("1\t0" closes it, the kernel's default): the lowest and highest
    /// group allowed to open ICMP datagram sockets. nil when the text is not two numbers.
    public static func pingGroupRange(_ text: String) -> ClosedRange<UInt32>? {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard parts.count == 2, let low = UInt32(parts[0]), let high = UInt32(parts[1]) else { return nil }
        return low <= high ? low...high : nil
    }

    /// Why the mediator cannot send ICMP echo requests, in words: both ways it could and what each lacks.
    public static func icmpRefusal(group: UInt32, pingGroupRange text: String?) -> String {
        let range = text.map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).joined(separator: " ") }
        return "ICMP echo needs CAP_NET_RAW (missing) or net.ipv4.ping_group_range to include group \(group)"
            + " (now \(range ?? "unreadable"))"
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return s
    }
}
