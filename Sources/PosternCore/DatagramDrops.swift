/// Why datagrams were dropped, counted per reason. Datagrams have no flow control and no error
/// path back to their sender: a relay that cannot carry one drops it, as a router would, and counts
/// it here so the drop is visible instead of silent.
public struct DatagramDrops: Hashable, Sendable {
    public enum Reason: Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// Larger than the path carries (the peer's frame limit, or a UDP channel's MTU).
        case oversize
        /// The path could not take it now (a full tunnel).
        case pathFull
        /// Its flow's backlog was full while the flow's port was being opened.
        case backlogFull
        /// Its flow's port could not be opened, or the flow was closed before it opened.
        case notOpened
        /// From a new peer while the relay holds its limit of flows.
        case flowLimit
        /// From a peer this port never sent to, with no policy admitting such peers; or, on a
        /// forward's socket, from anyone but the forward's target.
        case unsolicited
        /// To a destination the policy does not allow.
        case denied

        public var description: String {
            switch self {
            case .oversize: return "oversize"
            case .pathFull: return "path full"
            case .backlogFull: return "backlog full"
            case .notOpened: return "not opened"
            case .flowLimit: return "flow limit"
            case .unsolicited: return "unsolicited"
            case .denied: return "denied"
            }
        }
    }

    private var counts: [Reason: UInt64] = [:]

    public init() {}

    public subscript(reason: Reason) -> UInt64 { counts[reason] ?? 0 }

    public var total: UInt64 { counts.values.reduce(0, &+) }

    public mutating func count(_ reason: Reason, _ n: Int = 1) {
        counts[reason, default: 0] &+= UInt64(n)
    }

    /// The size rule, the same on every path: a datagram goes to the path only if it fits what the
    /// path carries and the path can take it now; otherwise it is counted and dropped.
    public mutating func admit(size: Int, limit: Int, pathCanTake: Bool) -> Bool {
        guard size <= limit else {
            count(.oversize)
            return false
        }
        guard pathCanTake else {
            count(.pathFull)
            return false
        }
        return true
    }
}
