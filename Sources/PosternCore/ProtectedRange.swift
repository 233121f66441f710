import PosternWire

/// Addresses that reach the mediator's own host or its link rather than its LAN: loopback, "this
/// host" and link-local, where the cloud metadata service (169.254.169.254) lives. A broad `--allow`
/// (or none at all) does not open them; only a rule that lies inside one of them does (see
/// `AllowRule.names(_:)`). Connecting to the unspecified address reaches the host itself on Linux,
/// which is why `0.0.0.0/8` and `::` are here too.
public enum ProtectedRange: CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// 0.0.0.0/8: "this host"; a connect to 0.0.0.0 reaches a loopback listener.
    case thisHostV4
    /// 127.0.0.0/8.
    case loopbackV4
    /// 169.254.0.0/16, with the cloud metadata service at 169.254.169.254.
    case linkLocalV4
    /// `::`: a connect to it reaches a loopback listener.
    case unspecifiedV6
    /// `::1`.
    case loopbackV6
    /// fe80::/10.
    case linkLocalV6

    public var network: IPAddress {
        switch self {
        case .thisHostV4: return .v4(0)
        case .loopbackV4: return .v4(0x7f00_0000)
        case .linkLocalV4: return .v4(0xa9fe_0000)
        case .unspecifiedV6: return .anyV6
        case .loopbackV6: return .v6([UInt8](repeating: 0, count: 15) + [1])
        case .linkLocalV6: return .v6([0xfe, 0x80] + [UInt8](repeating: 0, count: 14))
        }
    }

    public var prefixLength: Int {
        switch self {
        case .thisHostV4, .loopbackV4: return 8
        case .linkLocalV4: return 16
        case .unspecifiedV6, .loopbackV6: return 128
        case .linkLocalV6: return 10
        }
    }

    /// The range `address` lies in, after normalisation (so `::ffff:127.0.0.1` is loopback); nil for
    /// an ordinary address.
    public static func containing(_ address: IPAddress) -> ProtectedRange? {
        let address = address.normalized
        return allCases.first { $0.contains(address) }
    }

    /// Whether the network `network/prefixLength` lies wholly inside this range.
    public func contains(network: IPAddress, prefixLength: Int) -> Bool {
        network.isIPv6 == self.network.isIPv6 && prefixLength >= self.prefixLength
            && AllowRule.mask(network, self.prefixLength) == self.network
    }

    /// Asked for every CONNECT (`Policy.allowsConnect`): compares in place, where the general
    /// `contains(network:prefixLength:)` builds byte arrays for the mask and each range's network.
    func contains(_ address: IPAddress) -> Bool {
        switch (self, address) {
        case (.thisHostV4, .v4(let v)): return v >> 24 == 0
        case (.loopbackV4, .v4(let v)): return v >> 24 == 0x7f
        case (.linkLocalV4, .v4(let v)): return v >> 16 == 0xa9fe
        case (.unspecifiedV6, .v6(let b)): return b.count == 16 && b.allSatisfy { $0 == 0 }
        case (.loopbackV6, .v6(let b)): return b.count == 16 && b[15] == 1 && b[0..<15].allSatisfy { $0 == 0 }
        case (.linkLocalV6, .v6(let b)): return b.count == 16 && b[0] == 0xfe && b[1] & 0xc0 == 0x80
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .thisHostV4: return "\"this host\" range 0.0.0.0/8"
        case .loopbackV4: return "loopback range 127.0.0.0/8"
        case .linkLocalV4: return "link-local range 169.254.0.0/16"
        case .unspecifiedV6: return "unspecified address ::"
        case .loopbackV6: return "loopback address ::1"
        case .linkLocalV6: return "link-local range fe80::/10"
        }
    }
}
