import PosternWire

/// Where something of ours listens: an IP address and a port, never a host name. Listen addresses
/// are checked when the configuration is read, so binding them later cannot fail on a name.
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(_ address: IPAddress, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Nil when the endpoint holds a name.
    public init?(_ endpoint: Endpoint) {
        guard case .ip(let address) = endpoint.host else { return nil }
        self.init(address, endpoint.port)
    }

    public var endpoint: Endpoint { Endpoint(address, port) }

    public var description: String { endpoint.description }
}
