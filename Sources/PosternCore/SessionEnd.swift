import PosternWire

/// Why a session ended, said once in the log of each side.
public struct SessionEnd: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// True when the peer told us (REFUSED or GOAWAY), false when we decided.
    public var byPeer: Bool

    public init(code: ErrorCode, message: String, byPeer: Bool = false) {
        self.code = code
        self.message = message
        self.byPeer = byPeer
    }

    public var description: String {
        byPeer ? "peer ended the session: \(code): \(message)" : "\(code): \(message)"
    }
}
