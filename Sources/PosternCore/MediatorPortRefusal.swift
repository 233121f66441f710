import PosternWire

/// Why the mediator will not do what the server asked: becomes FAILED (docs/protocol.md §5). The
/// texts reach the server's user (`postern ctl`, logs), so they name the option that would change
/// the answer.
public enum MediatorPortRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    /// More requests this second than `--max-request-rate` allows.
    case requestRate(limit: Int)
    /// The session holds `--max-ports` ports.
    case portLimit(Int)
    /// Every u32 port id was used in this session (ids are never reused, §5); a new session starts afresh.
    case portIDsExhausted
    /// `--max-pending-connects` CONNECTs are in progress.
    case pendingConnectLimit(inProgress: Int, limit: Int)
    case noSuchPort(UInt32)
    /// CONNECT or LISTEN on a port that is not an opened, unconnected TCP port.
    case notUnconnectedTCP(UInt32)
    case listenDenied
    case redirectDenied
    /// The destination (as the server named it) is outside the `--allow` list.
    case destinationDenied(Endpoint)
    /// The destination (as the server named it) resolved to `address` (normalised), which lies in a
    /// protected range that no `--allow` rule names.
    case protectedDestination(Endpoint, address: IPAddress, ProtectedRange)
    /// OPEN or REDIRECT would bind an address of a protected range that no `--allow` rule names.
    case bindDenied(IPAddress, ProtectedRange)
    /// CLOSE came before the CONNECT finished: the CONNECT still gets its answer.
    case closedWhileConnecting(UInt32)
    /// CLOSE came before the LISTEN finished: the LISTEN still gets its answer.
    case closedBeforeListening(UInt32)
    /// A pipelined CONNECT (§5.3) named a server-chosen id at or below the last one: ids are never
    /// reused, and a live port is never touched by it.
    case serverPortIDReused(UInt32, last: UInt32)
    /// The server reset a pipelined port before its connect finished: the CONNECT still gets its answer.
    case resetWhileConnecting(UInt32)

    public var code: ErrorCode {
        switch self {
        case .requestRate, .portLimit, .portIDsExhausted, .pendingConnectLimit: return .limitExceeded
        case .noSuchPort: return .noSuchPort
        case .notUnconnectedTCP, .serverPortIDReused: return .invalidState
        case .listenDenied, .redirectDenied, .destinationDenied, .protectedDestination, .bindDenied: return .deniedByPolicy
        case .closedWhileConnecting, .closedBeforeListening, .resetWhileConnecting: return .connectionReset
        }
    }

    /// The Linux errno FAILED carries (§5), 0 where no system call failed.
    public var errno: Int32 {
        switch self {
        case .requestRate: return 11  // EAGAIN
        case .listenDenied, .redirectDenied, .destinationDenied, .protectedDestination, .bindDenied: return 13  // EACCES
        case .closedWhileConnecting, .closedBeforeListening, .resetWhileConnecting: return 103  // ECONNABORTED
        case .portLimit, .portIDsExhausted, .pendingConnectLimit, .noSuchPort, .notUnconnectedTCP, .serverPortIDReused: return 0
        }
    }

    public var message: String {
        switch self {
        case .requestRate(let limit):
            return "more than \(limit) requests a second (the mediator's --max-request-rate)"
        case .portLimit(let limit):
            return "the mediator holds its limit of \(limit) ports"
        case .portIDsExhausted:
            return "this session has used every port id; a new session starts afresh"
        case .pendingConnectLimit(let inProgress, let limit):
            return "\(inProgress) connects already in progress (limit \(limit))"
        case .noSuchPort(let id):
            return "no port \(id)"
        case .notUnconnectedTCP(let id):
            return "port \(id) is not an unconnected TCP port"
        case .listenDenied:
            return "this mediator does not allow listening (--allow-listen)"
        case .redirectDenied:
            return "this mediator does not allow redirect (--allow-redirect)"
        case .destinationDenied(let destination):
            return "\(destination) is not in this mediator's --allow list"
        case .protectedDestination(let destination, let address, let range):
            let resolved = destination.host == .ip(address) ? "" : " (\(address))"
            return "\(destination)\(resolved) is in the \(range), protected on the mediator: only an --allow rule inside it opens it"
        case .bindDenied(let address, let range):
            return "\(address) is in the \(range), protected on the mediator: only an --allow rule inside it allows binding it"
        case .closedWhileConnecting(let id):
            return "port \(id) was closed while connecting"
        case .closedBeforeListening(let id):
            return "port \(id) was closed before it was listening"
        case .serverPortIDReused(let id, let last):
            return "port id \(id) is not above the last server-chosen id \(last): ids are never reused"
        case .resetWhileConnecting(let id):
            return "port \(id) was reset by the server while connecting"
        }
    }

    public var description: String { message }
}
