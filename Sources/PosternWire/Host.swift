/// The host part of a destination: an address, or a name the mediator resolves in its own network.
public enum Host: Hashable, Sendable, CustomStringConvertible {
    case ip(IPAddress)
    case name(String)

    public init(_ text: some StringProtocol) {
        if let ip = IPAddress(text) { self = .ip(ip) } else { self = .name(String(text)) }
    }

    public var description: String {
        switch self {
        case .ip(let a): return a.bracketed
        // A name comes from the peer or the command line and is shown in logs: never raw.
        case .name(let n): return PeerText.sanitized(n)
        }
    }
}
