import NIOCore

/// Keepalive bookkeeping for one channel ("maintain channel", docs/protocol.md §4.4). Pure: time comes
/// in as an argument, so timeouts are tested without waiting.
///
/// Each side pings every `interval` whatever else flows (so a NAT mapping never idles out), and
/// declares the peer dead when nothing at all has arrived for `deadTimeout`.
public struct Liveness: Sendable {
    public let interval: TimeAmount
    public let deadTimeout: TimeAmount
    public private(set) var lastHeard: NIODeadline
    private var nextPing: NIODeadline
    private var token: UInt64 = 0

    public init(interval: TimeAmount, deadTimeout: TimeAmount, now: NIODeadline) {
        precondition(interval.nanoseconds > 0 && deadTimeout.nanoseconds > 0)
        self.interval = interval
        self.deadTimeout = deadTimeout
        self.lastHeard = now
        self.nextPing = now + interval
    }

    public enum Action: Hashable, Sendable {
        case none
        case sendPing(token: UInt64)
        case dead(silentFor: TimeAmount)
    }

    /// Any frame from the peer proves the channel alive.
    public mutating func heard(at now: NIODeadline) {
        if now > lastHeard { lastHeard = now }
    }

    public mutating func tick(now: NIODeadline) -> Action {
        if now - lastHeard >= deadTimeout {
            return .dead(silentFor: now - lastHeard)
        }
        if now >= nextPing {
            nextPing = now + interval
            token &+= 1
            return .sendPing(token: token)
        }
        return .none
    }

    /// When `tick` should next be called.
    public var nextDeadline: NIODeadline {
        min(nextPing, lastHeard + deadTimeout)
    }
}
