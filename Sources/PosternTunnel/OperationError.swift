import PosternWire

/// A failed remote socket operation as the server sees it: the mediator's FAILED answer, or the
/// session going away before the answer came.
public struct OperationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var errno: Int32
    public var message: String

    public init(code: ErrorCode, errno: Int32 = 0, message: String) {
        self.code = code
        self.errno = errno
        self.message = message
    }

    /// The peer's FAILED: its message is logged and shown in events and by ctl, so it is sanitised here.
    public init(_ failed: Frame.Failed) {
        self.init(code: failed.code, errno: failed.errno, message: PeerText.sanitized(failed.message))
    }

    public var description: String {
        message.isEmpty ? "\(code)" : "\(code): \(message)"
    }
}
