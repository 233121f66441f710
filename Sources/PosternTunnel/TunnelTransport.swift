import NIOCore

/// What carries the tunnel's bytes: the handlers between the socket and the frame codec. Plain TCP
/// adds none; TLS adds its handler. Nothing above the codec knows which one is in use.
public protocol TunnelTransport: Sendable {
    /// Shown in logs ("plain TCP", "TLS 1.3").
    var name: String { get }
    /// Handlers for the mediator's (client) end, socket side first.
    func clientHandlers(serverHost: String) throws -> [ChannelHandler]
    /// Handlers for the server's end, socket side first.
    func serverHandlers() throws -> [ChannelHandler]
}

/// Frames straight on TCP. Only for `--insecure` setups and the lab: nothing is encrypted.
public struct PlainTransport: TunnelTransport {
    public init() {}
    public var name: String { "plain TCP" }
    public func clientHandlers(serverHost: String) throws -> [ChannelHandler] { [] }
    public func serverHandlers() throws -> [ChannelHandler] { [] }
}
