import PosternWire

/// Where a BIND listens on the mediator. The first reply tells the client that address, and the
/// client passes it to the peer that is to connect (an FTP server's PORT command, say), so it must
/// be one the peer can reach, not 0.0.0.0: the mediator's address on the peer's subnet when the
/// request names a peer there, else its address on the interface of its default route, else any
/// address of the family that is not loopback or link-local. Unspecified when the mediator told
/// nothing of its interfaces.
public enum SOCKSBindAddress {
    public static func choose(for destination: Endpoint, in environment: MediatorEnvironment?) -> IPAddress {
        let peer: IPAddress? = if case .ip(let ip) = destination.host, !ip.isUnspecified { ip.normalized } else { nil }
        let v6 = peer?.isIPv6 ?? false
        let any: IPAddress = v6 ? .anyV6 : .anyV4
        guard let environment else { return any }
        let up = environment.interfaces.filter(\.isUp)
        let candidates = up.flatMap { i in i.addresses.map { (i.index, $0) } }
            .filter { $0.1.address.isIPv6 == v6 && !$0.1.address.isLoopback && !isLinkLocal($0.1.address) }
        if let peer, let onLink = candidates.first(where: { contains($0.1, peer) }) { return onLink.1.address }
        let defaultInterfaces = environment.routes.filter { $0.destination.address.isIPv6 == v6 }.map(\.interfaceIndex)
        if let routed = candidates.first(where: { defaultInterfaces.contains($0.0) }) { return routed.1.address }
        return candidates.first?.1.address ?? any
    }

    /// Whether `prefix` (an interface's address and prefix length) covers `address`.
    static func contains(_ prefix: MediatorEnvironment.AddressPrefix, _ address: IPAddress) -> Bool {
        let a = prefix.address.bytes
        let b = address.bytes
        guard a.count == b.count else { return false }
        var bits = min(Int(prefix.prefixLength), a.count * 8)
        var i = 0
        while bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
            if a[i] & mask != b[i] & mask { return false }
            bits -= 8
            i += 1
        }
        return true
    }

    static func isLinkLocal(_ address: IPAddress) -> Bool {
        let b = address.bytes
        return b.count == 16 ? (b[0] == 0xfe && b[1] & 0xc0 == 0x80) : (b[0] == 169 && b[1] == 254)
    }
}
