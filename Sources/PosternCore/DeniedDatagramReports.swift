import NIOCore

/// When a mediator's UDP port tells the server about the datagrams its policy dropped (DENIED,
/// docs/protocol.md §6.5): the first denial at once, later ones gathered and sent together at most
/// once per `interval`, so a flood to a denied destination costs one frame a second, not one per
/// datagram. Pure: the port calls `denied` for each drop and `flush` when the deadline it was given
/// passes; time is an argument.
public struct DeniedDatagramReports: Sendable {
    public enum Action: Equatable, Sendable {
        /// Nothing to do now (a flush is already due).
        case none
        /// Send DENIED with this count now.
        case send(UInt32)
        /// Call `flush` at this deadline (none was due yet).
        case flushAt(NIODeadline)
    }

    public let interval: TimeAmount
    /// Denials not yet reported (saturating: a count never wraps to a small number).
    public private(set) var pending: UInt32 = 0
    private var lastReport: NIODeadline?
    private var flushDue = false

    public init(interval: TimeAmount = .milliseconds(1000)) {
        self.interval = interval
    }

    /// One datagram was denied at `now`.
    public mutating func denied(now: NIODeadline) -> Action {
        pending = pending == .max ? .max : pending + 1
        if flushDue { return .none }
        if let lastReport, now < lastReport + interval {
            flushDue = true
            return .flushAt(lastReport + interval)
        }
        return .send(take(now))
    }

    /// The deadline `denied` gave passed: the count gathered since, if any.
    public mutating func flush(now: NIODeadline) -> UInt32? {
        flushDue = false
        guard pending > 0 else { return nil }
        return take(now)
    }

    private mutating func take(_ now: NIODeadline) -> UInt32 {
        let count = pending
        pending = 0
        lastReport = now
        return count
    }
}
