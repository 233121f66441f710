/// What one mediator session may hold (DESIGN.md, "Security stance": every number a peer can make us
/// hold is bounded). The mediator's `--max-ports`, `--max-pending-connects` and `--max-request-rate`.
public struct MediatorPortLimits: Hashable, Sendable {
    /// Ports held at once, of every kind. Requests beyond it fail; connections accepted beyond it are
    /// closed.
    public var maxPorts: Int
    /// CONNECTs in progress at once: each holds a socket and a timer until it resolves.
    public var maxPendingConnects: Int
    /// OPEN, REDIRECT, CONNECT and LISTEN requests a second (the same number may come at once). CLOSE
    /// only frees, so it is never limited.
    public var maxRequestRate: Int

    public init(maxPorts: Int, maxPendingConnects: Int, maxRequestRate: Int) {
        self.maxPorts = maxPorts
        self.maxPendingConnects = maxPendingConnects
        self.maxRequestRate = maxRequestRate
    }
}
