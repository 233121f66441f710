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

public struct ReceiveWindow: Hashable, Sendable {
    public let size: UInt32
    /// Bytes received and not yet consumed by the local socket.
    public private(set) var buffered: Int = 0
    /// Bytes consumed but not yet granted back; sent in batches to keep WINDOW frames rare.
    private var pendingGrant: Int = 0

    public init(size: UInt32) { self.size = size }

    public enum Violation: Error, Hashable, Sendable { case overrun(buffered: Int, size: UInt32) }

    /// Data arrived from the peer.
    public mutating func received(_ n: Int) throws {
        guard buffered + pendingGrant + n <= Int(size) else {
            throw Violation.overrun(buffered: buffered + pendingGrant + n, size: size)
        }
        buffered += n
    }

    /// The local socket took `n` bytes. Returns the increment to send in a WINDOW, if one is due:
    /// once a quarter of the window is consumed. The sender still holds three quarters of its
    /// credit then, so it never waits on us; and small request/response traffic sends no WINDOW
    /// frame per message (each would cost a write on one side and a read on the other).
    public mutating func consumed(_ n: Int) -> UInt32? {
        precondition(n <= buffered)
        buffered -= n
        pendingGrant += n
        if pendingGrant > 0 && pendingGrant >= max(1, Int(size) / 4) {
            defer { pendingGrant = 0 }
            return UInt32(pendingGrant)
        }
        return nil
    }
}
