import NIOCore

/// What one admin client may make the server hold (docs/security.md, "Bounds").
public struct AdminLimits: Sendable {
    /// Admin connections open at once; more are closed as soon as they are accepted.
    public var maxConnections = 64
    /// A connection must deliver a whole request this long after it opened or after the last
    /// answer, or it is closed: idle and trickling (slowloris) clients do not keep a slot.
    public var idleTimeout: TimeAmount = .seconds(30)
    /// A larger request body is answered 413 once and the connection closed.
    public var maxBody = 64 * 1024
    /// Event-stream bytes written but not yet taken by the client's socket; a `ctl events` that
    /// stops reading is dropped past it rather than buffered without bound.
    public var maxEventBacklog = 1 << 20

    public init() {}
}
