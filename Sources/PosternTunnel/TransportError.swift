import NIOCore
import PosternCore

/// A transport failure with a sentence for the log, raised through the pipeline by the transport.
public struct TransportError: Error, CustomStringConvertible {
    public var description: String
    /// About trust (a key other than the pinned one, a certificate refused by either end), not about the
    /// network: the mediator logs it as an error. It never stops the mediator: anyone on the path can
    /// send it before the server has proved the secret (docs/security.md, "What can stop a mediator").
    public var aboutTrust: Bool

    public init(_ description: String, aboutTrust: Bool = false) {
        self.description = description
        self.aboutTrust = aboutTrust
    }
}
