/// What a port of a mediator session is at the moment (docs/protocol.md §5). A TUN session's `packet`
/// port will be one more kind, with its own handle in `MediatorPortHandles`.
public enum MediatorPortKind: Hashable, Sendable, CustomStringConvertible {
    /// The id is taken and its socket is being made (OPEN binding, a connection being accepted). The
    /// server has not been told the id, so no request can name it yet.
    case opening
    /// OPEN of a TCP port: a bound socket, neither connected nor listening (§5.1).
    case reserved
    /// CONNECT in progress: resolving the destination, then connecting (§5.3).
    case connecting
    /// LISTEN accepted: the opened socket is becoming a listener (§5.4).
    case startingToListen
    /// A connected or accepted TCP connection, relayed as in §6.
    case stream
    /// A listening TCP port: each connection it accepts becomes a new `stream` port.
    case listener
    /// A UDP port opened by OPEN (§5.1, §6.2).
    case datagram

    public var description: String {
        switch self {
        case .opening: return "opening"
        case .reserved: return "reserved"
        case .connecting: return "connecting"
        case .startingToListen: return "starting to listen"
        case .stream: return "stream"
        case .listener: return "listener"
        case .datagram: return "datagram"
        }
    }
}
