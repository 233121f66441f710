import NIOCore
import PosternCore

/// Frames straight on TCP. Only for `--insecure` setups: nothing is encrypted or pinned.
public struct PlainTransport: ServerTransport, ClientTransport {
    public init() {}
    public var name: String { "plain TCP (--insecure: not encrypted)" }
    public func clientConnection(serverHost: String, serverPort: Int) throws -> TransportConnection {
        TransportConnection(handlers: [PlainPeerCheck()], facts: .plain)
    }
    public func serverConnection() throws -> TransportConnection {
        TransportConnection(handlers: [PlainPeerCheck()], facts: .plain)
    }
}
