import NIOCore
import PosternCore

/// One forward's `rate=`: a bucket for each direction, shared by all its connections (or flows), so
/// the limit holds for the forward as a whole. Owned by the server's event loop, like the forward.
final class ForwardRateLimit {
    /// Bytes from the users toward the mediator.
    var toMediator: ByteRateLimit
    /// Bytes from the mediator toward the users.
    var fromMediator: ByteRateLimit
    let now: () -> NIODeadline

    init(bytesPerSecond: UInt64, now: @escaping () -> NIODeadline) {
        self.now = now
        toMediator = ByteRateLimit(bytesPerSecond: bytesPerSecond, now: now())
        fromMediator = ByteRateLimit(bytesPerSecond: bytesPerSecond, now: now())
    }
}
