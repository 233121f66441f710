/// The two halves of a relayed TCP connection (docs/protocol.md §6.4): each direction ends by FIN on
/// its own, so a half-closed port keeps carrying the other direction; RST ends both at once.
public struct StreamState: Hashable, Sendable {
    /// We sent FINISHED: our socket reached end of input.
    public private(set) var sentFin = false
    /// The peer sent FINISHED: we shut our socket's output.
    public private(set) var receivedFin = false
    public private(set) var isReset = false

    public init() {}

    public enum Event: Hashable, Sendable { case localEOF, remoteFin, reset }

    public enum Outcome: Hashable, Sendable {
        /// Nothing more to do.
        case none
        /// Forward the event, port still half open.
        case halfClosed
        /// Both halves are done: release the port.
        case closed
        /// The event repeats one already seen or follows a reset: a peer error for remote events.
        case duplicate
    }

    public var isClosed: Bool { isReset || (sentFin && receivedFin) }

    public mutating func apply(_ event: Event) -> Outcome {
        if isClosed { return .duplicate }
        switch event {
        case .localEOF:
            if sentFin { return .duplicate }
            sentFin = true
        case .remoteFin:
            if receivedFin { return .duplicate }
            receivedFin = true
        case .reset:
            isReset = true
            return .closed
        }
        return isClosed ? .closed : .halfClosed
    }
}
