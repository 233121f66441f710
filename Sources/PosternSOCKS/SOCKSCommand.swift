import PosternWire

/// The CMD field of a SOCKS5 request (RFC 1928 §4).
public enum SOCKSCommand: UInt8, Hashable, Sendable, CustomStringConvertible {
    case connect = 1
    case bind = 2
    case udpAssociate = 3

    public var description: String {
        switch self {
        case .connect: return "CONNECT"
        case .bind: return "BIND"
        case .udpAssociate: return "UDP ASSOCIATE"
        }
    }
}

/// A complete SOCKS5 request: what the client asks the proxy to do, and where.
public struct SOCKSRequest: Hashable, Sendable {
    public var command: SOCKSCommand
    /// DST.ADDR and DST.PORT: a name stays a name (the mediator resolves it in its network), an IP
    /// literal written as a name becomes an address.
    public var destination: Endpoint

    public init(command: SOCKSCommand, destination: Endpoint) {
        self.command = command
        self.destination = destination
    }
}
