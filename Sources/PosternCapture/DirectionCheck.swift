/// What one direction of a replayed flow delivered, compared with what the capture holds: packets
/// and bytes delivered in order, the first offset where they differ, and whether the ending matched.
public struct DirectionCheck: Hashable, Sendable, Codable {
    public var direction: FlowDirection
    public var expectedPackets: Int
    /// Capture packets (TCP data segments, UDP datagrams) whose bytes all arrived, in order, intact.
    public var deliveredPackets: Int
    public var expectedBytes: Int
    public var receivedBytes: Int
    /// Byte offset of the first difference (a wrong byte, or the end of what arrived when bytes are
    /// missing or extra); nil when everything matched.
    public var firstDifference: Int?
    /// "fin", "reset" or "none" (refused flows: "reset").
    public var expectedEnding: String
    public var observedEnding: String

    public var ok: Bool { firstDifference == nil && expectedEnding == observedEnding }

    public init(
        direction: FlowDirection, expectedPackets: Int, deliveredPackets: Int, expectedBytes: Int, receivedBytes: Int,
        firstDifference: Int?, expectedEnding: String, observedEnding: String
    ) {
        self.direction = direction
        self.expectedPackets = expectedPackets
        self.deliveredPackets = deliveredPackets
        self.expectedBytes = expectedBytes
        self.receivedBytes = receivedBytes
        self.firstDifference = firstDifference
        self.expectedEnding = expectedEnding
        self.observedEnding = observedEnding
    }

    /// TCP: the received stream against the capture's data events of that direction.
    public static func stream(_ flow: Flow, direction: FlowDirection, received: [UInt8], ending: String) -> DirectionCheck {
        var chunks: [[UInt8]] = []
        for event in flow.events where event.direction == direction {
            if case .data(let b) = event.kind { chunks.append(b) }
        }
        // A direction ends with its own FIN or with an RST from either side (the receiver's own RST
        // ends what it receives too), whichever comes first.
        var expectedEnding = "none"
        for event in flow.events {
            if event.kind == .reset {
                expectedEnding = "reset"
                break
            }
            if event.kind == .fin && event.direction == direction {
                expectedEnding = "fin"
                break
            }
        }
        let expected = chunks.flatMap { $0 }
        let same = zip(expected, received).prefix { $0 == $1 }.count
        var delivered = 0
        var end = 0
        for chunk in chunks {
            end += chunk.count
            if end <= same { delivered += 1 } else { break }
        }
        let differs = same < expected.count || received.count != expected.count
        return DirectionCheck(
            direction: direction, expectedPackets: chunks.count, deliveredPackets: delivered, expectedBytes: expected.count,
            receivedBytes: received.count, firstDifference: differs ? same : nil, expectedEnding: expectedEnding, observedEnding: ending)
    }

    /// UDP: the received datagrams, in order, against the capture's.
    public static func datagrams(_ flow: Flow, direction: FlowDirection, received: [[UInt8]]) -> DirectionCheck {
        let expected = flow.events.filter { $0.direction == direction }.compactMap { e -> [UInt8]? in
            if case .datagram(let b) = e.kind { return b }
            return nil
        }
        let same = zip(expected, received).prefix { $0 == $1 }.count
        var offset = expected.prefix(same).reduce(0) { $0 + $1.count }
        var difference: Int? = nil
        if same < expected.count || received.count != expected.count {
            if same < min(expected.count, received.count) {
                offset += zip(expected[same], received[same]).prefix { $0 == $1 }.count
            }
            difference = offset
        }
        return DirectionCheck(
            direction: direction, expectedPackets: expected.count, deliveredPackets: same,
            expectedBytes: expected.reduce(0) { $0 + $1.count }, receivedBytes: received.reduce(0) { $0 + $1.count },
            firstDifference: difference, expectedEnding: "none", observedEnding: "none")
    }
}
