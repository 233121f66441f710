import NIOCore
import PosternWire

/// ICMP "destination unreachable" that a router sends when it cannot deliver a packet: the raw LAN
/// presence (issue 11) answers a packet with it when ARP found no neighbour for its next hop (code
/// 1, host unreachable) or no route leads to it (code 0, network unreachable). Pure; the same rules
/// as `ICMPFragmentationNeeded` decide which packets may get one.
public enum ICMPUnreachable {
    public static let type: UInt8 = 3
    public static let net: UInt8 = 0
    public static let host: UInt8 = 1

    /// The error about `packet`, from `router` (the address of the host that gave up) to its source.
    public static func make(for packet: ByteBuffer, code: UInt8, from router: IPAddress) -> ByteBuffer? {
        ICMPFragmentationNeeded.error(for: packet, type: type, code: code, nextHopMTU: 0, from: router)
    }
}
