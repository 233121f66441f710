/// What a stream port machine made of a frame from the peer, in the manner of swift-nio-http2's
/// `StateMachineResult`: a frame is either fine (perform the action), ignored, an error of this port
/// only (perform the action, which resets the port; the session goes on), or an error of the whole
/// session (end it with GOAWAY `protocolError`, docs/protocol.md §2.3).
public enum StreamPortResult: Hashable, Sendable {
    case succeeded(StreamPortAction)
    /// The port is already released: a frame that crossed its RESET or FINISHED on the wire (§6.4).
    case ignored
    /// Log the violation once, then perform the action (RESET `protocolError` and an abortive close).
    case streamError(StreamPortViolation, then: StreamPortAction)
    /// The violation concerns the session: end it. No port rule asks for this today (every port
    /// violation resets only its port, §2.3), but the result type keeps the distinction.
    case sessionError(StreamPortViolation)
}
