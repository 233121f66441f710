/// Names one flow of a `DatagramFlowTable` for its whole life. Never reused, so a port that opens
/// after its flow was closed (and perhaps replaced by a new flow of the same peer) is known as stale.
public struct DatagramFlowID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public var description: String { "flow \(rawValue)" }
}
