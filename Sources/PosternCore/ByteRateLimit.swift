import NIOCore

/// A bandwidth limit in bytes a second (a forward's `rate=`): a token bucket of bytes that starts full
/// and holds at most `burst`. Pure: time comes in.
///
/// Streams `spend` what they already read or are about to write, which may take the bucket into
/// debt; they then pause (stop reading, hold the next write) for the `TimeAmount` returned, so the
/// average stays at the rate and no byte is dropped. Datagrams `take` only what is there: one that
/// does not fit is dropped by the caller.
public struct ByteRateLimit: Hashable, Sendable {
    public let bytesPerSecond: UInt64
    public let burst: UInt64
    private var tokens: Double
    private var last: NIODeadline

    /// The burst is a tenth of a second's worth, and at least 64 KiB so that a full-sized datagram
    /// (or one socket read) can pass at every rate.
    public static func defaultBurst(for bytesPerSecond: UInt64) -> UInt64 { max(bytesPerSecond / 10, 65_536) }

    public init(bytesPerSecond: UInt64, burst: UInt64? = nil, now: NIODeadline) {
        precondition(bytesPerSecond > 0, "a bandwidth limit needs a positive rate")
        self.bytesPerSecond = bytesPerSecond
        self.burst = max(1, burst ?? Self.defaultBurst(for: bytesPerSecond))
        self.tokens = Double(self.burst)
        self.last = now
    }

    private mutating func refill(now: NIODeadline) {
        guard now > last else { return }  // a clock that goes back grants nothing
        // Multiplied before divided: whole figures stay exact in a Double.
        let earned = Double((now - last).nanoseconds) * Double(bytesPerSecond) / 1e9
        tokens = min(Double(burst), tokens + earned)
        last = now
    }

    /// How long a stream must wait before it may move more bytes: zero while the bucket holds any.
    public mutating func wait(now: NIODeadline) -> TimeAmount {
        refill(now: now)
        guard tokens <= 0 else { return .zero }
        // Rounded up to a whole microsecond, and never zero: after the wait, tokens are positive.
        let micros = (-tokens * 1e6 / Double(bytesPerSecond)).rounded(.up)
        return .microseconds(max(1, Int64(micros)))
    }

    /// A stream moved `count` bytes: they are taken even into debt. Returns how long to pause now.
    public mutating func spend(_ count: Int, now: NIODeadline) -> TimeAmount {
        refill(now: now)
        tokens -= Double(count)
        return wait(now: now)
    }

    /// A datagram of `count` bytes passes only when the bucket holds that many (then they are taken).
    public mutating func take(_ count: Int, now: NIODeadline) -> Bool {
        refill(now: now)
        guard Double(count) <= tokens else { return false }
        tokens -= Double(count)
        return true
    }
}
