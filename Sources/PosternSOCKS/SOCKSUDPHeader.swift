import NIOCore
import PosternWire

/// The header in front of every datagram between a SOCKS5 client and the UDP relay (RFC 1928 §7):
/// RSV (2 bytes, 0), FRAG (1 byte), then ATYP, DST.ADDR and DST.PORT as in a request.
public enum SOCKSUDPHeader {
    /// What a datagram from the client holds.
    public enum Parsed: Hashable, Sendable {
        /// A whole datagram for `destination`; `payload` shares the datagram's storage.
        case datagram(destination: Endpoint, payload: ByteBuffer)
        /// FRAG ≠ 0: this relay does not reassemble, and the RFC lets it drop such datagrams.
        case fragment
        /// Too short, RSV ≠ 0, an unknown ATYP or an unusable name.
        case malformed
    }

    public static func parse(_ datagram: ByteBuffer) -> Parsed {
        var b = datagram
        guard let reserved = b.readInteger(as: UInt16.self), let frag = b.readInteger(as: UInt8.self) else { return .malformed }
        guard reserved == 0 else { return .malformed }
        guard frag == 0 else { return .fragment }
        guard let destination = try? b.readSOCKSAddress() else { return .malformed }
        return .datagram(destination: destination, payload: b)
    }

    /// Writes the header for a datagram that came from `source` (an answer to the client).
    @discardableResult
    public static func write(from source: Endpoint, into buffer: inout ByteBuffer) -> Int {
        buffer.writeInteger(UInt16(0)) + buffer.writeInteger(UInt8(0)) + buffer.writeSOCKSAddress(source)
    }

    /// The header's length for `source`, to reserve room in front of a payload.
    public static func length(for source: Endpoint) -> Int {
        switch source.host {
        case .ip(let ip): return 3 + 1 + (ip.isIPv6 ? 16 : 4) + 2
        case .name(let n): return 3 + 1 + 1 + min(255, n.utf8.count) + 2
        }
    }
}
