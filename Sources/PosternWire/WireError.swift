/// A frame that cannot be accepted. The session that received it ends with a logged reason
/// (docs/protocol.md §2.3); nothing here ever traps.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    case frameTooLarge(length: UInt32, limit: UInt32)
    case unknownType(UInt8)
    case nonZeroFlags(type: UInt8, flags: UInt8)
    case truncated(frame: String)
    case trailingBytes(frame: String, count: Int)
    case invalidValue(field: String, value: String)
    case badMagic

    public var description: String {
        switch self {
        case .frameTooLarge(let length, let limit):
            return "frame of \(length) bytes exceeds the limit of \(limit)"
        case .unknownType(let t):
            return "unknown frame type 0x\(String(t, radix: 16))"
        case .nonZeroFlags(let t, let f):
            return "frame type 0x\(String(t, radix: 16)) has reserved flags 0x\(String(f, radix: 16)) set"
        case .truncated(let frame):
            return "\(frame) frame is truncated"
        case .trailingBytes(let frame, let count):
            return "\(frame) frame has \(count) unexpected trailing bytes"
        case .invalidValue(let field, let value):
            return "invalid \(field): \(value)"
        case .badMagic:
            return "not a Postern peer (bad magic in hello)"
        }
    }
}
