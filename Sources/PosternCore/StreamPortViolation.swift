/// A rule of docs/protocol.md §6 that the peer broke on one stream port. Each one resets only that
/// port today (§2.3, last paragraph); `StreamPortResult` can also say "end the session" for rules
/// that may come to concern the whole session.
public enum StreamPortViolation: Hashable, Sendable, CustomStringConvertible {
    /// DATA that would take what we received and did not grant back past our window (§6.3).
    case dataBeyondWindow(bytes: Int)
    /// The same, while the port's socket was not ready yet and its frames were being kept (§6.3).
    case dataBeyondWindowBeforeReady(bytes: Int)
    /// More frames than `StreamPortStateMachine.maxEarlyFrames` while the port's socket was not
    /// ready: each costs memory and no window, so their number is bounded too.
    case tooManyFramesBeforeReady(Int)
    /// DATA after the peer's own FINISHED (§6.1).
    case dataAfterFinished
    /// A second FINISHED (§6.4).
    case finishedTwice
    /// A WINDOW that would take our credit past 2^31 - 1 (§6.3).
    case windowOverflow
    /// DATAGRAM on a TCP port (§6.2).
    case datagramOnStreamPort

    public var description: String {
        switch self {
        case .dataBeyondWindow(let n): return "peer sent \(n) bytes beyond the window"
        case .dataBeyondWindowBeforeReady(let n): return "DATA (\(n) bytes) beyond the window before the connection was ready"
        case .tooManyFramesBeforeReady(let n): return "more than \(n) frames before the connection was ready"
        case .dataAfterFinished: return "DATA after FINISHED"
        case .finishedTwice: return "FINISHED twice"
        case .windowOverflow: return "window overflow"
        case .datagramOnStreamPort: return "DATAGRAM on a TCP port"
        }
    }
}
