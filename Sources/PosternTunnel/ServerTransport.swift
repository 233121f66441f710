import NIOCore
import PosternCore

/// The server's end.
public protocol ServerTransport: TunnelTransport {
    /// One new connection on the service port.
    func serverConnection() throws -> TransportConnection
}
