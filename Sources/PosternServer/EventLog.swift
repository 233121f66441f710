import Foundation
import NIOCore

/// Recent events and the live subscribers of the admin API. Lives on the server's control loop;
/// an event posted from a session's loop (`--threads` above 1) is carried there first, in order.
public final class EventLog {
    /// The control loop (set by `ServerService`); nil: the caller's loop is the only one (tests).
    var eventLoop: EventLoop?
    private var recent: [ServerEvent] = []
    private let keep = 1000
    private var subscribers: [UInt64: (ServerEvent) -> Void] = [:]
    private var nextID: UInt64 = 0
    /// The wall clock events are stamped with.
    private let clock: () -> Date

    public init(clock: @escaping () -> Date) {
        self.clock = clock
    }

    public func post(_ event: ServerEvent) {
        if let loop = eventLoop, !loop.inEventLoop {
            // The wall-clock stamp is taken where it happened.
            var event = event
            event.time = ServerEvent.timestamp(clock())
            loop.execute { self.append(event) }
            return
        }
        var event = event
        event.time = ServerEvent.timestamp(clock())
        append(event)
    }

    private func append(_ event: ServerEvent) {
        recent.append(event)
        if recent.count > keep { recent.removeFirst(recent.count - keep) }
        for s in subscribers.values { s(event) }
    }

    public func subscribe(_ f: @escaping (ServerEvent) -> Void) -> UInt64 {
        nextID += 1
        subscribers[nextID] = f
        return nextID
    }

    public func unsubscribe(_ id: UInt64) { subscribers[id] = nil }

    public var history: [ServerEvent] { recent }
}
