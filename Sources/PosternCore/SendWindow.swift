import PosternWire

/// Per-port flow control (docs/protocol.md §6.3), the way SSH and HTTP/2 do it: a sender may have at
/// most `window` unconsumed bytes in flight on a port, and the receiver grants more with WINDOW as
/// its socket drains. A slow reader stalls only its own port; memory per port stays bounded.
public struct SendWindow: Hashable, Sendable {
    public private(set) var credit: Int

    public init(initial: UInt32) { credit = Int(initial) }

    public var isOpen: Bool { credit > 0 }

    /// Bytes may be sent only while credit lasts; the caller splits larger buffers.
    public mutating func consume(_ n: Int) {
        precondition(n <= credit, "sending beyond the window")
        credit -= n
    }

    /// A WINDOW from the peer. An increment that would overflow 2^31-1 is a protocol error.
    public mutating func grant(_ increment: UInt32) throws {
        let new = credit + Int(increment)
        guard new <= Int(Int32.max) else {
            throw WireError.invalidValue(field: "window increment", value: "\(increment) overflows the window")
        }
        credit = new
    }
}
