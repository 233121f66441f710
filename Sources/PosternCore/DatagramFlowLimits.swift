import NIOCore

/// The bounds of a datagram relay's flows (`DatagramFlowTable`).
public struct DatagramFlowLimits: Hashable, Sendable {
    /// Datagrams a flow keeps while its port is being opened; later ones are dropped.
    public var maxBacklog: Int
    /// A flow without traffic either way for this long is closed.
    public var idleTimeout: TimeAmount
    /// Flows held at once. Each flow holds a port at the far end (a mediator port, of which a
    /// session has `--max-ports`, or a server socket), so one forward's senders, however many
    /// source ports they use, cannot take every port from the other forwards.
    public var maxFlows: Int
    /// While new peers are refused for `maxFlows`, the relay logs at most once in this long.
    public var flowLimitLogInterval: TimeAmount

    public static let defaultMaxFlows = 256

    public init(
        maxBacklog: Int = 64, idleTimeout: TimeAmount = .seconds(60), maxFlows: Int = Self.defaultMaxFlows,
        flowLimitLogInterval: TimeAmount = .seconds(30)
    ) {
        self.maxBacklog = maxBacklog
        self.idleTimeout = idleTimeout
        self.maxFlows = maxFlows
        self.flowLimitLogInterval = flowLimitLogInterval
    }
}
