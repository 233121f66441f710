/// One thing a flow did, in the order the capture shows it: bytes that became part of a direction's
/// stream (TCP, already in sequence order), a datagram (UDP, ICMP), or the end of a direction.
public struct FlowEvent: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// TCP: the next bytes of the direction's stream.
        case data([UInt8])
        /// UDP: one datagram's payload; ICMP: the whole message.
        case datagram([UInt8])
        /// TCP FIN, in sequence after the direction's last byte.
        case fin
        /// TCP RST.
        case reset
    }

    /// Nanoseconds since the epoch, of the packet that made this happen.
    public var time: Int64
    public var direction: FlowDirection
    public var kind: Kind
    /// The packet (1-based) that made this happen.
    public var packet: Int

    public init(time: Int64, direction: FlowDirection, kind: Kind, packet: Int) {
        self.time = time
        self.direction = direction
        self.kind = kind
        self.packet = packet
    }
}
