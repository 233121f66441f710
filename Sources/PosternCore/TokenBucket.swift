import NIOCore

/// A request-rate limit: `rate` tokens a second, at most `burst` saved up. Pure: time comes in.
public struct TokenBucket: Hashable, Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var last: NIODeadline

    /// Starts full, so a fresh session may send a burst at once.
    public init(rate: Double, burst: Double, now: NIODeadline) {
        precondition(rate > 0 && burst >= 1, "a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now
    }

    /// Takes one token if there is one.
    public mutating func take(now: NIODeadline) -> Bool {
        if now > last {
            let seconds = Double((now - last).nanoseconds) / 1e9
            tokens = min(burst, tokens + seconds * rate)
            last = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
