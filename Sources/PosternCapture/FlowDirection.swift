/// Which side of a flow sent something: the initiator (who sent the SYN or the first datagram) or
/// the responder.
public enum FlowDirection: String, Hashable, Sendable, Codable, CustomStringConvertible {
    case fromInitiator = "initiator"
    case fromResponder = "responder"

    public var reversed: FlowDirection { self == .fromInitiator ? .fromResponder : .fromInitiator }
    public var description: String { rawValue }
}
