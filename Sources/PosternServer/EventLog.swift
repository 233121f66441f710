import Foundation

/// Recent events and the live subscribers of the admin API. Lives on the server's event loop.
public final class EventLog {
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
        var event = event
        event.time = ServerEvent.timestamp(clock())
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
