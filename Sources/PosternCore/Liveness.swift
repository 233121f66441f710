import NIOCore

/// Keepalive bookkeeping for one channel ("maintain channel", docs/protocol.md §4.4). Pure: time comes
/// in as an argument, so timeouts are tested without waiting.
///
/// Each side pings every `interval` whatever else flows (so a NAT mapping never idles out), and
/// declares the peer dead when nothing at all has arrived for `deadTimeout`.
///
/// A probe asks sooner: when another session claims this mediator's name, the server pings at once and
/// the peer must answer that very ping within a short timeout, or it is declared dead then (so a
/// mediator that lost its NAT mapping comes back in seconds, and a live one keeps its name).
public struct Liveness: Sendable {
    public let interval: TimeAmount
    public let deadTimeout: TimeAmount
    public private(set) var lastHeard: NIODeadline
    private var nextPing: NIODeadline
    private var token: UInt64 = 0
    /// The probe in flight: the PONG token that answers it, when it was sent and when it is overdue.
    public private(set) var probe: (token: UInt64, sent: NIODeadline, deadline: NIODeadline)?
    /// The latest keepalive PING and when it went out: its PONG measures the round trip.
    private var lastPing: (token: UInt64, sent: NIODeadline)?
    /// The round trip of the latest PING answered (keepalive or probe); nil before the first.
    public private(set) var roundTrip: TimeAmount?

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
        /// The probe's ping went unanswered for `after`.
        case probeUnanswered(after: TimeAmount)
    }

    /// Any frame from the peer proves the channel alive.
    public mutating func heard(at now: NIODeadline) {
        if now > lastHeard { lastHeard = now }
    }

    /// Pings now and expects the PONG for this ping within `timeout`; returns the ping's token. A probe
    /// already in flight is kept (its earlier deadline stands): asking twice proves nothing more.
    public mutating func startProbe(timeout: TimeAmount, now: NIODeadline) -> UInt64? {
        guard probe == nil else { return nil }
        token &+= 1
        probe = (token, now, now + timeout)
        lastPing = (token, now)
        return token
    }

    /// A PONG arrived at `now`: if it answers the latest PING, the round trip is measured. True when
    /// it answers the probe in flight (which is then over).
    public mutating func pong(token: UInt64, at now: NIODeadline) -> Bool {
        if let ping = lastPing, ping.token == token, now >= ping.sent {
            roundTrip = now - ping.sent
            lastPing = nil
        }
        return pong(token: token)
    }

    /// A PONG arrived: true when it answers the probe in flight (which is then over).
    public mutating func pong(token: UInt64) -> Bool {
        guard let probe, probe.token == token else { return false }
        self.probe = nil
        return true
    }

    public mutating func tick(now: NIODeadline) -> Action {
        if let probe, now >= probe.deadline {
            self.probe = nil
            return .probeUnanswered(after: now - probe.sent)
        }
        if now - lastHeard >= deadTimeout {
            return .dead(silentFor: now - lastHeard)
        }
        if now >= nextPing {
            nextPing = now + interval
            token &+= 1
            lastPing = (token, now)
            return .sendPing(token: token)
        }
        return .none
    }

    /// When `tick` should next be called.
    public var nextDeadline: NIODeadline {
        min(nextPing, lastHeard + deadTimeout, probe?.deadline ?? .distantFuture)
    }
}
