import NIOCore
import PosternCore

/// The mediator's end.
public protocol ClientTransport: TunnelTransport {
    /// One new connection to the server at `serverHost`:`serverPort` as configured.
    func clientConnection(serverHost: String, serverPort: Int) throws -> TransportConnection
}
