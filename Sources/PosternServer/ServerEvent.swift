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
