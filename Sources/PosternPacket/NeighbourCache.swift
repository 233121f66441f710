import NIOCore
import PosternWire

/// IP address to MAC address, as learned from ARP (and later NDP) on the LAN, for injecting the remote
/// side's packets as Ethernet frames (issue 11, raw LAN presence). Entries expire `lifetime` after
/// they were last confirmed; at `capacity` the stalest entry makes room, so a host that answers for
/// a whole subnet cannot grow the cache. Pure: time is an argument.
public struct NeighbourCache: Sendable {
    public let lifetime: TimeAmount
    public let capacity: Int
    private var entries: [IPAddress: (mac: [UInt8], confirmed: NIODeadline)] = [:]

    public init(lifetime: TimeAmount = .seconds(60), capacity: Int = 1024) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    public var count: Int { entries.count }

    /// Records that `address` is at `mac` (seen now). Non-unicast MACs are not learned.
    public mutating func learn(_ address: IPAddress, at mac: [UInt8], now: NIODeadline) {
        guard ARPPacket.isUnicast(mac) else { return }
        if entries[address] == nil && entries.count >= capacity {
            expire(now: now)
            if entries.count >= capacity, let stalest = entries.min(by: { $0.value.confirmed < $1.value.confirmed })?.key {
                entries[stalest] = nil
            }
        }
        entries[address] = (mac, now)
    }

    /// The MAC of `address` if it was confirmed less than `lifetime` ago.
    public func lookup(_ address: IPAddress, now: NIODeadline) -> [UInt8]? {
        guard let e = entries[address], now - e.confirmed < lifetime else { return nil }
        return e.mac
    }

    /// How long ago `address` was last confirmed, if it is still in the cache and fresh.
    public func age(of address: IPAddress, now: NIODeadline) -> TimeAmount? {
        guard let e = entries[address], now - e.confirmed < lifetime else { return nil }
        return now - e.confirmed
    }

    /// Drops every entry older than `lifetime`.
    public mutating func expire(now: NIODeadline) {
        entries = entries.filter { now - $0.value.confirmed < lifetime }
    }
}
