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

/// The server's end.
public protocol ServerTransport: TunnelTransport {
    /// One new connection on the service port.
    func serverConnection() throws -> TransportConnection
}

/// The mediator's end.
public protocol ClientTransport: TunnelTransport {
    /// One new connection to the server at `serverHost`:`serverPort` as configured.
    func clientConnection(serverHost: String, serverPort: Int) throws -> TransportConnection
}

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

/// The inbound user event a transport fires when its own handshake is done and frames may flow.
public struct TransportReadyEvent: Sendable {
    public var facts: TransportFacts

    public init(facts: TransportFacts) {
        self.facts = facts
    }
}

/// A transport failure with a sentence for the log, raised through the pipeline by the transport.
public struct TransportError: Error, CustomStringConvertible {
    public var description: String
    /// Retrying cannot help (the server presented a key other than the pinned one): the mediator stops.
    public var fatal: Bool

    public init(_ description: String, fatal: Bool = false) {
        self.description = description
        self.fatal = fatal
    }
}

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

/// On a plain tunnel, a peer that opens with a TLS record is a peer configured for TLS: say so instead
/// of reporting an unknown frame type.
final class PlainPeerCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        // A TLS record header: handshake (22) or alert (21), version 3.x.
        if buffer.readableBytes >= 2, let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            type == 22 || type == 21, buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) == 3
        {
            context.fireErrorCaught(
                TransportError("the peer speaks TLS but this end runs --insecure (plain TCP): use TLS on both ends, or --insecure on both"))
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
