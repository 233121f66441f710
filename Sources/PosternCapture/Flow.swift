import PosternWire

/// One conversation of a capture: a TCP connection, a UDP conversation or an ICMP exchange, with its
/// initiator and responder, its events in capture order, and whether the capture holds all of it.
public struct Flow: Hashable, Sendable {
    public enum Transport: String, Hashable, Sendable, Codable {
        case tcp, udp, icmp
    }

    /// 1-based, in order of the flow's first packet.
    public var number: Int
    public var transport: Transport
    /// Address and port of the side that opened the flow (ICMP: port 0).
    public var initiator: Endpoint
    public var responder: Endpoint
    public var firstPacket: Int
    public var startTime: Int64
    public var endTime: Int64
    public var events: [FlowEvent] = []
    /// TCP: how it ended; UDP and ICMP: `.none`.
    public var ending: FlowEnding = .none
    /// Why the capture does not hold the whole flow (empty: complete).
    public var incomplete: [String] = []
    /// Retransmitted and out-of-order segments seen (TCP), for the report.
    public var retransmissions = 0
    public var outOfOrder = 0
    /// ICMP: what the messages are ("echo", "destination unreachable", ...).
    public var summary = ""

    public init(number: Int, transport: Transport, initiator: Endpoint, responder: Endpoint, firstPacket: Int, startTime: Int64) {
        self.number = number
        self.transport = transport
        self.initiator = initiator
        self.responder = responder
        self.firstPacket = firstPacket
        self.startTime = startTime
        self.endTime = startTime
    }

    public var isComplete: Bool { incomplete.isEmpty }

    /// The bytes one side sent, in stream order (TCP data or the concatenated datagrams).
    public func bytes(from direction: FlowDirection) -> [UInt8] {
        var out: [UInt8] = []
        for event in events where event.direction == direction {
            switch event.kind {
            case .data(let b), .datagram(let b): out += b
            case .fin, .reset: break
            }
        }
        return out
    }

    /// Data events (TCP) or datagrams (UDP, ICMP) one side sent.
    public func packets(from direction: FlowDirection) -> Int {
        events.filter { e in
            guard e.direction == direction else { return false }
            switch e.kind {
            case .data, .datagram: return true
            case .fin, .reset: return false
            }
        }.count
    }

    /// "tcp 10.0.0.1:1234 -> 10.0.0.2:80"
    public var label: String { "\(transport.rawValue) \(initiator) -> \(responder)" }
}
