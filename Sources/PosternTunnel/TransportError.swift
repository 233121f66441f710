import NIOCore
import PosternCore

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
