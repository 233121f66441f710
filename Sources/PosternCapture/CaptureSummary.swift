/// A capture split into flows, with what could not be placed in one.
public struct CaptureSummary: Hashable, Sendable {
    public var flows: [Flow]
    public var packets: Int
    public var notIP: Int
    public var otherTransport: Int
    /// The first `CaptureFlows.maxDescribed` packets that could not be read, with their reason.
    public var undecodable: [String]
    public var undecodableCount: Int

    public init(flows: [Flow], packets: Int, notIP: Int, otherTransport: Int, undecodable: [String], undecodableCount: Int) {
        self.flows = flows
        self.packets = packets
        self.notIP = notIP
        self.otherTransport = otherTransport
        self.undecodable = undecodable
        self.undecodableCount = undecodableCount
    }

    /// Splits records already read.
    public init(records: some Sequence<CaptureRecord>) {
        var flows = CaptureFlows()
        for record in records { flows.add(record) }
        self = flows.finish()
    }
}

extension CaptureSummary {
    /// A fingerprint of the flows (FNV-1a over numbers, transports and every event's bytes): the two
    /// sides of a replay compare it to be sure they read the same capture the same way.
    public var digest: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        func mix(_ value: Int) { for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: value >> shift)) } }
        for flow in flows {
            mix(flow.number)
            for byte in flow.transport.rawValue.utf8 { mix(byte) }
            for event in flow.events {
                mix(event.direction == .fromInitiator ? 1 : 2)
                switch event.kind {
                case .data(let b), .datagram(let b):
                    mix(b.count)
                    for byte in b { mix(byte) }
                case .fin: mix(3)
                case .reset: mix(4)
                }
            }
        }
        return String(hash, radix: 16)
    }
}
