import NIOCore
import PosternCore

/// One connection's transport handlers and what its handshake learned. Loop-confined, like the channel.
public final class TransportConnection {
    public let handlers: [ChannelHandler]
    /// What the session machine needs from the transport (channel binding, the peer certificate's
    /// names): set when the transport is ready, at once on plain TCP. A transport that becomes ready
    /// later (TLS) also fires a `TransportReadyEvent` down the pipeline.
    public var facts: TransportFacts?
    /// Mediator end: called once the server has proved it knows the secret (trust on first use records
    /// the key here, never earlier).
    public var authenticated: () -> Void = {}

    public init(handlers: [ChannelHandler], facts: TransportFacts? = nil) {
        self.handlers = handlers
        self.facts = facts
    }
}
