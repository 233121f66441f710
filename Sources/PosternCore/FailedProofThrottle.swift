import NIOCore

/// Failed proofs per source address, and whether that address may connect now (docs/security.md,
/// "Hygiene").
///
/// A secret can be guessed only by trying it: each wrong guess costs the guesser a TCP and a TLS
/// handshake and earns a REFUSED. Without a limit, a fast host tries thousands a second. So each
/// address has a token bucket of `burst` failures that refills in `window`; a failure takes a token,
/// and when the last one is gone the address is closed: its new connections are closed at accept,
/// before TLS, until the bucket is full again. That leaves a guesser `burst` guesses per `window`,
/// while a mediator whose secret is wrong (or that shares a NAT address with such a host) gets in
/// again as soon as the burst is over.
///
/// The table of addresses is bounded: past `maxAddresses`, the least recently seen open address is
/// forgotten first (forgetting it only gives back guesses it has not used), a closed one only when
/// every address is closed. Pure: time is passed in.
public struct FailedProofThrottle: Sendable {
    public let burst: Int
    public let window: TimeAmount
    public let maxAddresses: Int

    /// What a failed proof did.
    public enum Outcome: Hashable, Sendable {
        /// Counted; the address may fail `remaining` more times before it is closed.
        case counted(remaining: Int)
        /// This failure closed the address for `closedFor`: the start of a burst, to be logged once.
        case closed(closedFor: TimeAmount)
        /// The address was closed already (a connection accepted before it was): counted, not logged again.
        case alreadyClosed
    }

    private struct Entry: Sendable {
        var tokens: Double
        var updated: NIODeadline
        var closed: Bool
    }

    private var entries: [String: Entry] = [:]
    /// Connections closed at accept, over the process's life.
    public private(set) var refusedConnections = 0

    public init(burst: Int = 5, window: TimeAmount = .seconds(10), maxAddresses: Int = 4096) {
        precondition(burst >= 1 && window > .zero && maxAddresses >= 1)
        self.burst = burst
        self.window = window
        self.maxAddresses = maxAddresses
    }

    /// How many addresses are remembered.
    public var count: Int { entries.count }

    /// Whether `source` is closed now (for tests and status).
    public func isClosed(_ source: String) -> Bool { entries[source]?.closed ?? false }

    /// A proof from `source` failed at `now`.
    public mutating func failedProof(from source: String, now: NIODeadline) -> Outcome {
        var entry = entries[source].map { refilled($0, now: now) } ?? Entry(tokens: Double(burst), updated: now, closed: false)
        if entries[source] == nil { makeRoom(now: now) }
        entry.tokens = max(0, entry.tokens - 1)
        defer { entries[source] = entry }
        if entry.closed { return .alreadyClosed }
        guard entry.tokens < 1 else { return .counted(remaining: Int(entry.tokens)) }
        entry.closed = true
        return .closed(closedFor: timeToFull(entry))
    }

    /// A new connection from `source` at `now`: false when it must be closed at once.
    public mutating func admits(_ source: String, now: NIODeadline) -> Bool {
        guard let old = entries[source] else { return true }
        let entry = refilled(old, now: now)
        if entry.tokens >= Double(burst) {
            // Full again: the burst is over, and the address is as good as never seen.
            entries[source] = nil
            return true
        }
        entries[source] = entry
        guard entry.closed else { return true }
        refusedConnections += 1
        return false
    }

    private func refilled(_ entry: Entry, now: NIODeadline) -> Entry {
        guard now > entry.updated else { return entry }
        var e = entry
        let gained = Double((now - entry.updated).nanoseconds) / Double(window.nanoseconds) * Double(burst)
        e.tokens = min(Double(burst), e.tokens + gained)
        e.updated = now
        if e.tokens >= Double(burst) { e.closed = false }
        return e
    }

    private func timeToFull(_ entry: Entry) -> TimeAmount {
        .nanoseconds(Int64((Double(burst) - entry.tokens) / Double(burst) * Double(window.nanoseconds)))
    }

    /// Before a new address is added: forget full buckets, then the least recently seen open address,
    /// and a closed one only when nothing else is left.
    private mutating func makeRoom(now: NIODeadline) {
        guard entries.count >= maxAddresses else { return }
        for (source, entry) in entries where refilled(entry, now: now).tokens >= Double(burst) {
            entries[source] = nil
        }
        guard entries.count >= maxAddresses else { return }
        let victim =
            entries.filter { !$0.value.closed }.min { $0.value.updated < $1.value.updated }
            ?? entries.min { $0.value.updated < $1.value.updated }
        if let victim { entries[victim.key] = nil }
    }
}
