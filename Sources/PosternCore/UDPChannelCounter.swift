/// The sending counter of one channel direction (docs/protocol.md §9.4): 0, 1, 2, ... and never the
/// same value twice, so no nonce is ever reused under the direction's key. It stops before the top
/// value, 2^64 − 1, instead of wrapping; there is no rekeying: at ten million datagrams a second that
/// takes 58,000 years, and a channel that did get there would close and leave its traffic to a new
/// channel id or a new session (new keys).
public struct UDPChannelCounter: Hashable, Sendable {
    /// The value the next datagram takes.
    public private(set) var next: UInt64

    public init(next: UInt64 = 0) {
        self.next = next
    }

    /// Whether every counter has been used.
    public var isExhausted: Bool { next == UInt64.max }

    /// Takes the next counter, or nil once exhausted.
    public mutating func take() -> UInt64? {
        guard !isExhausted else { return nil }
        defer { next += 1 }
        return next
    }
}
