import Atomics
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
    /// Live subscribers, read from any loop: events as frequent as a forward's connections are made
    /// only while someone follows the stream (`isFollowed`), and never kept (`post(_:keep:)`).
    private let followers = ManagedAtomic<Int>(0)
    /// The wall clock events are stamped with.
    private let clock: () -> Date

    public init(clock: @escaping () -> Date) {
        self.clock = clock
    }

    /// Whether anyone follows the stream now (a hint from any loop: an event posted as the last
    /// follower leaves is dropped, one posted as the first arrives may be missed).
    public var isFollowed: Bool { followers.load(ordering: .relaxed) > 0 }

    /// `keep: false`: for live subscribers only, not the history (a forward's connections would push
    /// the mediators' comings and goings out of its 1,000 events within a second).
    public func post(_ event: ServerEvent, keep: Bool = true) {
        if let loop = eventLoop, !loop.inEventLoop {
            // The wall-clock stamp is taken where it happened.
            var event = event
            event.time = ServerEvent.timestamp(clock())
            loop.execute { self.append(event, keep: keep) }
            return
        }
        var event = event
        event.time = ServerEvent.timestamp(clock())
        append(event, keep: keep)
    }

    private func append(_ event: ServerEvent, keep kept: Bool) {
        if kept {
            recent.append(event)
            if recent.count > keep { recent.removeFirst(recent.count - keep) }
        }
        for s in subscribers.values { s(event) }
    }

    public func subscribe(_ f: @escaping (ServerEvent) -> Void) -> UInt64 {
        nextID += 1
        subscribers[nextID] = f
        followers.wrappingIncrement(ordering: .relaxed)
        return nextID
    }

    public func unsubscribe(_ id: UInt64) {
        if subscribers.removeValue(forKey: id) != nil { followers.wrappingDecrement(ordering: .relaxed) }
    }

    public var history: [ServerEvent] { recent }
}
