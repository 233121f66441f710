import NIOCore
import PosternCore

/// What carries the tunnel's bytes: the handlers between the socket and the frame codec. TLS adds its
/// handler; plain TCP (`--insecure`) adds none. Nothing above the codec knows which one is in use.
/// Each end has its own kind: the server accepts (`ServerTransport`), the mediator dials
/// (`ClientTransport`).
public protocol TunnelTransport: Sendable {
    /// Shown in logs ("plain TCP", "TLS 1.3").
    var name: String { get }
}
