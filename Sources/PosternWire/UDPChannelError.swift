/// A UDP channel datagram that cannot be read (docs/protocol.md §9.5). The channel counts it and drops
/// it; nothing here ever traps, and no such error ends the session: anyone can send a datagram to the
/// service port.
public enum UDPChannelError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Longer than the channel ever sends (`UDPChannelHeader.maxDatagramSize`).
    case tooLarge(size: Int, limit: Int)
    /// Too short for its header and tag, or a message field running past the end.
    case truncated(what: String)
    /// A first byte other than `UDPChannelHeader.kind`.
    case unknownKind(UInt8)
    /// A sealed message type this version does not know.
    case unknownMessageType(UInt8)
    /// Bytes left after a message's last field.
    case trailingBytes(message: String, count: Int)
    /// A field with a value outside its range (the reserved byte, a bool, an address type).
    case invalidValue(field: String, value: String)

    public var description: String {
        switch self {
        case .tooLarge(let size, let limit):
            return "UDP channel datagram of \(size) bytes exceeds the limit of \(limit)"
        case .truncated(let what):
            return "UDP channel \(what) is truncated"
        case .unknownKind(let k):
            return "unknown UDP channel datagram kind 0x\(String(k, radix: 16))"
        case .unknownMessageType(let t):
            return "unknown UDP channel message type 0x\(String(t, radix: 16))"
        case .trailingBytes(let message, let count):
            return "UDP channel \(message) has \(count) unexpected trailing bytes"
        case .invalidValue(let field, let value):
            return "invalid UDP channel \(field): \(value)"
        }
    }
}
