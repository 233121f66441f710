#if canImport(Glibc)
    import Glibc
#endif

/// Why reading the host's network environment failed. Each case names the call or message so an
/// operator can tell a missing permission from a kernel that answered something unexpected.
public enum NetlinkError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A libc or libmnl call failed; `errno` is the value it left behind.
    case callFailed(call: String, errno: Int32)
    /// The kernel answered a request with a message we cannot read (truncated header or attribute).
    case malformedReply(request: String, detail: String)
    /// The dump kept being invalidated by concurrent changes (NLM_F_DUMP_INTR) and we gave up.
    case dumpInterrupted(request: String, attempts: Int)
    /// The kernel refused a change request (`NetlinkRequest.summary` says which).
    case requestFailed(String, errno: Int32)
    /// No interface of that name exists.
    case noSuchInterface(String)

    public var description: String {
        switch self {
        case .callFailed(let call, let code):
            return "netlink: \(call) failed: \(Self.errnoText(code)) (errno \(code))"
        case .malformedReply(let request, let detail):
            return "netlink: malformed reply to \(request): \(detail)"
        case .dumpInterrupted(let request, let attempts):
            return "netlink: \(request) dump was interrupted by concurrent changes \(attempts) times in a row"
        case .requestFailed(let summary, let code):
            return "cannot \(summary): \(Self.reason(code))"
        case .noSuchInterface(let name):
            return "no such device: \(name)"
        }
    }

    /// The kernel's errno for a change request, in the words an operator needs.
    static func reason(_ code: Int32) -> String {
        switch code {
        case EEXIST: return "it is already there (in use by someone else?) (errno \(code))"
        case ENODEV: return "no such device (errno \(code))"
        case EPERM, EACCES: return "not permitted: TUN mode needs CAP_NET_ADMIN (errno \(code))"
        case EADDRNOTAVAIL: return "no such address (errno \(code))"
        case ESRCH, ENOENT: return "no such entry (errno \(code))"
        default: return "\(errnoText(code)) (errno \(code))"
        }
    }

    /// Whether undoing a change failed only because the thing is gone already.
    public var isAlreadyGone: Bool {
        switch self {
        case .requestFailed(_, let code): return [ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL].contains(code)
        case .noSuchInterface: return true
        default: return false
        }
    }

    /// strerror is not thread-safe; Swift sees glibc's XSI strerror_r, which fills our buffer.
    static func errnoText(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard strerror_r(code, &buffer, buffer.count) == 0 else { return "unknown error \(code)" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
