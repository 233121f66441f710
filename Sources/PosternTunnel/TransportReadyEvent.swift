import NIOCore
import PosternCore

/// The inbound user event a transport fires when its own handshake is done and frames may flow.
public struct TransportReadyEvent: Sendable {
    public var facts: TransportFacts

    public init(facts: TransportFacts) {
        self.facts = facts
    }
}
