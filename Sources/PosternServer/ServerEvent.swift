import Foundation

/// One line of the event stream (`postern ctl events`, GET /v1/events).
public struct ServerEvent: Codable, Sendable {
    public var time: String
    public var mediator: String?
    public var kind: String
    public var port: UInt32?
    public var detail: String

    /// `time` is stamped by `EventLog.post`, from the clock the server gave it.
    public init(mediator: String?, kind: String, port: UInt32? = nil, detail: String) {
        self.time = ""
        self.mediator = mediator
        self.kind = kind
        self.port = port
        self.detail = detail
    }

    static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}

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
