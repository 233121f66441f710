// Prefix arithmetic for TUN mode's LAN prefixes (docs/protocol.md §10): which addresses a prefix holds
// and whether two prefixes share any. Pure.

extension MediatorEnvironment.AddressPrefix {
    /// Parses "192.168.77.0/24" or "fd00:77::/64"; a bare address is a host prefix (/32 or /128).
    public init?(parsing text: some StringProtocol) {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(pieces.count), let address = IPAddress(pieces[0]) else { return nil }
        let maxLength = address.isIPv6 ? 128 : 32
        if pieces.count == 2 {
            guard let n = Int(pieces[1]), (0...maxLength).contains(n) else { return nil }
            self.init(address: address, prefixLength: UInt8(n))
        } else {
            self.init(address: address, prefixLength: UInt8(maxLength))
        }
    }

    /// The prefix with the host bits cleared: 192.168.77.50/24 → 192.168.77.0/24.
    public var network: Self { .init(address: Self.mask(address, Int(prefixLength)), prefixLength: prefixLength) }

    /// Whether `other` lies in this prefix (same family, same leading `prefixLength` bits).
    public func contains(_ other: IPAddress) -> Bool {
        // IPv4 as integers: TUN mode's policy asks this for every packet, and `mask` makes arrays.
        if case .v4(let a) = other, case .v4(let net) = address {
            let bits = min(Int(prefixLength), 32)
            guard bits > 0 else { return true }
            let m = UInt32.max << UInt32(32 - bits)
            return a & m == net & m
        }
        guard other.isIPv6 == address.isIPv6 else { return false }
        return Self.mask(other, Int(prefixLength)) == Self.mask(address, Int(prefixLength))
    }

    /// Whether the two prefixes share at least one address: one contains the other's network.
    public func overlaps(_ other: Self) -> Bool {
        guard other.address.isIPv6 == address.isIPv6 else { return false }
        let shorter = min(prefixLength, other.prefixLength)
        return Self.mask(address, Int(shorter)) == Self.mask(other.address, Int(shorter))
    }

    static func mask(_ a: IPAddress, _ prefix: Int) -> IPAddress {
        var bytes = a.bytes
        for i in bytes.indices {
            let bitsHere = max(0, min(8, prefix - i * 8))
            bytes[i] &= bitsHere == 8 ? 0xff : ~(0xff >> UInt8(bitsHere))
        }
        return IPAddress(bytes: bytes)!
    }
}
