/// When a listening forward stops accepting: with `pauseAt` of its connections still waiting for
/// their CONNECT, more accepted now would only queue in the server; left unaccepted they wait in
/// the kernel's listen backlog, which costs nothing and which clients already retry into. Accepting
/// resumes once the waiting ones fall to `resumeAt` (a gap, so a busy forward does not flip every
/// connection). Pure; the caller turns `autoRead` off and on.
public struct AcceptGate: Hashable, Sendable {
    public let pauseAt: Int
    public let resumeAt: Int
    public private(set) var waiting = 0
    public private(set) var isPaused = false

    public init(pauseAt: Int, resumeAt: Int? = nil) {
        precondition(pauseAt >= 1, "a gate that never opens")
        self.pauseAt = pauseAt
        self.resumeAt = min(pauseAt - 1, max(0, resumeAt ?? pauseAt / 2))
    }

    /// A connection was accepted and waits for its CONNECT. True: stop accepting now.
    public mutating func arrived() -> Bool {
        waiting += 1
        guard !isPaused, waiting >= pauseAt else { return false }
        isPaused = true
        return true
    }

    /// A connection's CONNECT was answered (or it was given up). True: accept again now.
    public mutating func settled() -> Bool {
        waiting = max(0, waiting - 1)
        guard isPaused, waiting <= resumeAt else { return false }
        isPaused = false
        return true
    }
}
