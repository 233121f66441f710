import NIOCore

/// When the mediator dials again after losing the server (DESIGN: "fast first retries, then capped,
/// jittered exponential backoff"). Random numbers come from the caller so tests are exact.
public struct Backoff: Sendable {
    public var fastRetries: Int = 3
    public var fastDelay: TimeAmount = .milliseconds(200)
    public var base: TimeAmount = .milliseconds(500)
    public var cap: TimeAmount = .seconds(30)
    public private(set) var attempt = 0

    public init() {}

    /// Call after each failed or lost connection. `unit` is a random number in [0, 1).
    public mutating func nextDelay(unit: Double) -> TimeAmount {
        defer { attempt += 1 }
        if attempt < fastRetries { return fastDelay }
        let exponent = min(attempt - fastRetries, 30)
        let ceiling = min(Double(base.nanoseconds) * pow2(exponent), Double(cap.nanoseconds))
        // "Equal jitter": half fixed, half random, so retries spread yet never collapse to zero.
        let delay = ceiling / 2 + ceiling / 2 * max(0, min(unit, 1))
        return .nanoseconds(Int64(delay))
    }

    /// A session that lasted a while resets the schedule: the next loss gets fast retries again.
    public mutating func reset() { attempt = 0 }

    private func pow2(_ n: Int) -> Double { Double(1 << n) }
}
