import PosternWire

/// How a stream port ended: told to its owner when the port is released (events, counters, logs).
public enum StreamPortEnd: Hashable, Sendable, CustomStringConvertible {
    /// Both directions finished (FIN each way).
    case closed
    /// CLOSE from the server (§5.5): the socket closes normally.
    case closedByRequest
    /// The peer sent RESET with this code.
    case resetByPeer(ErrorCode)
    /// The session ended: every port goes at once.
    case tunnelClosed
    /// The socket went away without FIN both ways.
    case socketClosed
    /// The socket failed (ECONNRESET above all); the text describes the error.
    case socketError(String)
    /// The peer broke a rule of this port.
    case violation(StreamPortViolation)
    /// DATA for this port would pass the session's buffer limit (`SessionSettings.maxBufferedBytes`).
    case sessionBufferFull
    /// The same, while the port's frames were being kept before its socket was ready.
    case sessionBufferFullBeforeReady
    /// The port's owner reset it (a connect that failed, say); the text says why.
    case aborted(String)

    public var description: String {
        switch self {
        case .closed: return "closed"
        case .closedByRequest: return "closed by request"
        case .resetByPeer(let code): return "reset by peer (\(code))"
        case .tunnelClosed: return "tunnel closed"
        case .socketClosed: return "socket closed"
        case .socketError(let error): return "reset (\(error))"
        case .violation(let v): return v.description
        case .sessionBufferFull: return "session buffer limit exceeded"
        case .sessionBufferFullBeforeReady: return "session buffer limit exceeded before the connection was ready"
        case .aborted(let why): return why
        }
    }
}
