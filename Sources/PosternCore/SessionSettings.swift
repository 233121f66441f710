import NIOCore
import PosternWire

/// Timing and sizing of a session, agreed in HELLO/WELCOME (docs/protocol.md §4).
public struct SessionSettings: Hashable, Sendable {
    /// How often each side pings. 10 s stays far inside the shortest NAT mapping lifetimes seen
    /// for TCP (home routers idle out TCP after minutes; UDP after 30 s on Linux conntrack).
    public var keepaliveInterval: TimeAmount = .seconds(10)
    /// Silence after which the peer is declared dead.
    public var deadTimeout: TimeAmount = .seconds(30)
    /// Time an unauthenticated connection may take to finish the handshake.
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Bytes a port may receive before its reader grants more (per-port flow control, §6.3).
    public var initialWindow: UInt32 = 4 << 20
    /// Largest payload accepted in one frame.
    public var maxPayload: UInt32 = FrameDecoder.defaultMaxPayload
    /// Bytes all ports of one session may hold received from the peer but not yet written to their
    /// sockets. Each port is bounded by its window; this bounds their sum: a DATA frame that would pass
    /// it resets its port with `limitExceeded`, and the other ports keep going.
    public var maxBufferedBytes: Int = 256 << 20

    public init() {}
}
