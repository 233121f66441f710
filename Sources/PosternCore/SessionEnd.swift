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

    /// The peer's REFUSED or GOAWAY: its message is the peer's text, sanitised here once, since every
    /// side logs a session's end and shows it in events (PeerText).
    public static func fromPeer(code: ErrorCode, message: String) -> SessionEnd {
        SessionEnd(code: code, message: PeerText.sanitized(message), byPeer: true)
    }

    public var description: String {
        byPeer ? "peer ended the session: \(code): \(message)" : "\(code): \(message)"
    }
}
