import NIOCore
import PosternWire

/// One end of a tunnel connection's session (docs/protocol.md §4), as its handler drives it: every
/// input is a method taking the time, every decision comes back as actions. The server's and the
/// mediator's machines differ in the handshake only; the handler holds either one without knowing which.
public protocol SessionStateMachine: Sendable {
    var isEstablished: Bool { get }
    /// When `tick` should next run; nil before `start` and after the session closed.
    var nextDeadline: NIODeadline? { get }

    /// The connection is up: the handshake timer starts (and the mediator says HELLO).
    mutating func start(now: NIODeadline) -> [SessionAction]
    /// The transport can carry frames and knows what it learned in its own handshake. It comes once,
    /// before the first frame is read (TLS completes before any data; plain TCP is ready at once); a
    /// handshake frame that arrives before it is refused.
    mutating func transportReady(_ facts: TransportFacts, now: NIODeadline) -> [SessionAction]
    /// One frame from the peer.
    mutating func receive(_ frame: Frame, now: NIODeadline) -> [SessionAction]
    /// The bytes from the peer do not decode: REFUSED before the session is established, GOAWAY after.
    mutating func decodeFailed(_ error: WireError, now: NIODeadline) -> [SessionAction]
    /// The service ends the session on its own (shutdown, replaced, a protocol error in a layer above).
    mutating func goAway(_ code: ErrorCode, _ message: String) -> [SessionAction]
    mutating func tick(now: NIODeadline) -> [SessionAction]
    /// Asks an established peer to prove it is alive now: a PING whose PONG must come back within
    /// `timeout`, delivered to the layer above as `.deliver(.pong)`; unanswered, the session ends
    /// (`keepaliveTimeout`). Nothing happens before establishment, or while a probe is in flight.
    mutating func probe(timeout: TimeAmount, now: NIODeadline) -> [SessionAction]
    /// The latest keepalive round trip (PING to its PONG), for status and metrics.
    var keepaliveRoundTrip: TimeAmount? { get }
}

extension SessionStateMachine {
    /// Machines that do not measure it.
    public var keepaliveRoundTrip: TimeAmount? { nil }
}
