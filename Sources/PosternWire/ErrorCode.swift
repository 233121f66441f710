/// Why something failed, as carried on the wire (docs/protocol.md §7). Values never change meaning;
/// a receiver maps unknown values to `.unknown` rather than failing.
public enum ErrorCode: Hashable, Sendable, CustomStringConvertible {
    case refused
    case unreachable
    case timedOut
    case deniedByPolicy
    case addressInUse
    case addressNotAvailable
    case noSuchPort
    case invalidState
    case notSupported
    case limitExceeded
    case resolveFailed
    case connectionReset
    case protocolError
    case authenticationFailed
    case unknownMediator
    case replaced
    case shuttingDown
    case versionMismatch
    case keepaliveTimeout
    case internalError
    case permissionDenied
    case unknown(UInt16)

    public init(rawValue: UInt16) {
        switch rawValue {
        case 1: self = .refused
        case 2: self = .unreachable
        case 3: self = .timedOut
        case 4: self = .deniedByPolicy
        case 5: self = .addressInUse
        case 6: self = .addressNotAvailable
        case 7: self = .noSuchPort
        case 8: self = .invalidState
        case 9: self = .notSupported
        case 10: self = .limitExceeded
        case 11: self = .resolveFailed
        case 12: self = .connectionReset
        case 13: self = .protocolError
        case 14: self = .authenticationFailed
        case 15: self = .unknownMediator
        case 16: self = .replaced
        case 17: self = .shuttingDown
        case 18: self = .versionMismatch
        case 19: self = .keepaliveTimeout
        case 20: self = .internalError
        case 21: self = .permissionDenied
        default: self = .unknown(rawValue)
        }
    }

    public var rawValue: UInt16 {
        switch self {
        case .refused: return 1
        case .unreachable: return 2
        case .timedOut: return 3
        case .deniedByPolicy: return 4
        case .addressInUse: return 5
        case .addressNotAvailable: return 6
        case .noSuchPort: return 7
        case .invalidState: return 8
        case .notSupported: return 9
        case .limitExceeded: return 10
        case .resolveFailed: return 11
        case .connectionReset: return 12
        case .protocolError: return 13
        case .authenticationFailed: return 14
        case .unknownMediator: return 15
        case .replaced: return 16
        case .shuttingDown: return 17
        case .versionMismatch: return 18
        case .keepaliveTimeout: return 19
        case .internalError: return 20
        case .permissionDenied: return 21
        case .unknown(let v): return v
        }
    }

    public var description: String {
        switch self {
        case .refused: return "connection refused"
        case .unreachable: return "unreachable"
        case .timedOut: return "timed out"
        case .deniedByPolicy: return "denied by policy"
        case .addressInUse: return "address in use"
        case .addressNotAvailable: return "address not available"
        case .noSuchPort: return "no such port"
        case .invalidState: return "invalid state for this operation"
        case .notSupported: return "not supported"
        case .limitExceeded: return "limit exceeded"
        case .resolveFailed: return "name resolution failed"
        case .connectionReset: return "connection reset"
        case .protocolError: return "protocol error"
        case .authenticationFailed: return "authentication failed"
        case .unknownMediator: return "unknown mediator"
        case .replaced: return "replaced by a newer session"
        case .shuttingDown: return "shutting down"
        case .versionMismatch: return "protocol version mismatch"
        case .keepaliveTimeout: return "keepalive timeout"
        case .internalError: return "internal error"
        case .permissionDenied: return "permission denied"
        case .unknown(let v): return "error \(v)"
        }
    }

    /// The Postern code for a socket errno, so the remote user sees the same meaning.
    public init(errno: Int32) {
        switch errno {
        case 111: self = .refused  // ECONNREFUSED
        case 101, 113: self = .unreachable  // ENETUNREACH, EHOSTUNREACH
        case 110: self = .timedOut  // ETIMEDOUT
        case 98: self = .addressInUse  // EADDRINUSE
        case 99: self = .addressNotAvailable  // EADDRNOTAVAIL
        case 104, 32: self = .connectionReset  // ECONNRESET, EPIPE
        case 13, 1: self = .permissionDenied  // EACCES, EPERM
        default: self = .internalError
        }
    }
}
