import NIOCore

/// The bounds of a datagram relay's flows (`DatagramFlowTable`).
public struct DatagramFlowLimits: Hashable, Sendable {
    /// Datagrams a flow keeps while its port is being opened; later ones are dropped.
    public var maxBacklog: Int
    /// A flow without traffic either way for this long is closed.
    public var idleTimeout: TimeAmount

    public init(maxBacklog: Int = 64, idleTimeout: TimeAmount = .seconds(60)) {
        self.maxBacklog = maxBacklog
        self.idleTimeout = idleTimeout
    }
}
