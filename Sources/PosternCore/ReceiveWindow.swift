/// The receiving half of per-port flow control (docs/protocol.md §6.3): DATA beyond what was granted
/// is an overrun, and consumed bytes are granted back in batches (see `consumed`).
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
