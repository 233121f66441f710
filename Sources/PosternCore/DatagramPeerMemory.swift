/// The peers a datagram port exchanged datagrams with, so replies pass a stateful firewall both
/// ways. Bounded: when it holds more than `capacity` peers it forgets the oldest half, so a peer
/// spraying source addresses costs memory only up to the bound.
public struct DatagramPeerMemory<Peer: Hashable> {
    public let capacity: Int
    /// Each peer with the sequence number of its last exchange (larger is more recent).
    private var lastSeen: [Peer: UInt64] = [:]
    private var sequence: UInt64 = 0

    public init(capacity: Int = 4096) {
        precondition(capacity >= 2, "a peer memory holds at least two peers")
        self.capacity = capacity
    }

    public var count: Int { lastSeen.count }

    public func contains(_ peer: Peer) -> Bool { lastSeen[peer] != nil }

    public mutating func remember(_ peer: Peer) {
        sequence &+= 1
        lastSeen[peer] = sequence
        if lastSeen.count > capacity {
            let cutoff = sequence - UInt64(capacity / 2)
            lastSeen = lastSeen.filter { $0.value > cutoff }
        }
    }
}

extension DatagramPeerMemory: Sendable where Peer: Sendable {}
