import ArgumentParser
import NIOCore
import PosternCore

/// `--max-session-buffer` (server and mediator): MiB a session may hold for slow sockets.
enum SessionBuffer {
    static func apply(_ mebibytes: Int?, to settings: inout SessionSettings) throws {
        guard let m = mebibytes else { return }
        guard (1...65536).contains(m) else { throw ValidationError("--max-session-buffer must be 1-65536 (MiB)") }
        settings.maxBufferedBytes = m << 20
    }
}
