import PosternWire

/// The REP field of a SOCKS5 reply (RFC 1928 §6).
public enum SOCKSReply: UInt8, Hashable, Sendable, CustomStringConvertible {
    case succeeded = 0
    case generalFailure = 1
    case notAllowed = 2
    case networkUnreachable = 3
    case hostUnreachable = 4
    case connectionRefused = 5
    case ttlExpired = 6
    case commandNotSupported = 7
    case addressTypeNotSupported = 8

    /// The reply for a mediator's FAILED (docs/protocol.md §7): the client learns what a direct
    /// connect would have told it. ENETUNREACH and EHOSTUNREACH share Postern's `unreachable`; the
    /// errno FAILED carries tells them apart. A timed-out connect is 6 ("TTL expired"), which clients
    /// such as curl and Chromium report as a timeout.
    public init(failure code: ErrorCode, errno: Int32) {
        switch code {
        case .refused: self = .connectionRefused
        case .unreachable: self = errno == 113 ? .hostUnreachable : .networkUnreachable
        case .resolveFailed: self = .hostUnreachable
        case .timedOut: self = .ttlExpired
        case .deniedByPolicy, .permissionDenied: self = .notAllowed
        case .notSupported: self = .commandNotSupported
        default: self = .generalFailure
        }
    }

    public var description: String {
        switch self {
        case .succeeded: return "succeeded"
        case .generalFailure: return "general failure"
        case .notAllowed: return "connection not allowed by ruleset"
        case .networkUnreachable: return "network unreachable"
        case .hostUnreachable: return "host unreachable"
        case .connectionRefused: return "connection refused"
        case .ttlExpired: return "TTL expired"
        case .commandNotSupported: return "command not supported"
        case .addressTypeNotSupported: return "address type not supported"
        }
    }
}
