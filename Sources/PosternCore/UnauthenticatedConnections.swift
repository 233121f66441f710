/// The server's connections that have not authenticated yet, and which one to drop when there are
/// too many (docs/security.md, "Bounds").
///
/// Dropping the oldest on every accept let a flood of new connections (~1,000/s) push a real
/// mediator out in the middle of its handshake, over and over. Instead:
/// - each source address holds at most `maxPerSource` of them, so one host cannot fill the table;
/// - a connection is protected as it gets further (past TLS, then past HELLO): when room is needed,
///   the one dropped is chosen at random among those that got least far, never the newcomer's
///   competitor that already said HELLO. A flood of slow or silent connections only ever evicts
///   itself, and at random, so no order of arrival lets it aim at a real mediator;
/// - when every other candidate has sent HELLO, the newcomer is refused instead.
///
/// Pure: the random choice comes from the generator passed in (seeded in tests). No clock is needed:
/// the handshake timeout that ends a connection stuck at any stage is the session machine's.
public struct UnauthenticatedConnections: Sendable {
    /// How far a connection got. Ordered: a later stage is protected from an earlier one.
    public enum Stage: Int, Comparable, Sendable {
        /// TCP accepted; the transport's handshake (TLS) is under way.
        case connected
        /// The transport is ready (TLS done, or plain TCP): waiting for HELLO.
        case transportReady
        /// A frame arrived (HELLO): the mediator is proving itself. Never evicted.
        case helloReceived

        public static func < (a: Stage, b: Stage) -> Bool { a.rawValue < b.rawValue }
    }

    public enum Admission: Hashable, Sendable {
        /// Keep the newcomer; close these first (empty when there was room).
        case admitted(evicting: [UInt64])
        /// Close the newcomer at once: every other candidate is further along.
        case refused(Refusal)
    }

    public enum Refusal: Hashable, Sendable, CustomStringConvertible {
        case sourceFull(Int)
        case tableFull(Int)

        public var description: String {
            switch self {
            case .sourceFull(let n): return "\(n) unauthenticated connections from this address, all past HELLO"
            case .tableFull(let n): return "\(n) unauthenticated connections, all past HELLO"
            }
        }
    }

    public let maxTotal: Int
    public let maxPerSource: Int
    private var entries: [UInt64: Entry] = [:]
    private var perSource: [String: Int] = [:]

    private struct Entry: Sendable {
        var source: String
        var stage: Stage
    }

    public init(maxTotal: Int = 256, maxPerSource: Int = 16) {
        precondition(maxTotal >= 1 && maxPerSource >= 1)
        self.maxTotal = maxTotal
        self.maxPerSource = maxPerSource
    }

    public var count: Int { entries.count }
    public func count(from source: String) -> Int { perSource[source] ?? 0 }
    public func stage(of id: UInt64) -> Stage? { entries[id]?.stage }

    /// A new connection `id` from `source` (its address). The evicted ones are already forgotten here.
    public mutating func admit<R: RandomNumberGenerator>(_ id: UInt64, from source: String, using rng: inout R)
        -> Admission
    {
        precondition(entries[id] == nil, "connection \(id) admitted twice")
        var evicted: [UInt64] = []
        if count(from: source) >= maxPerSource {
            guard let victim = pickVictim(among: { $0.source == source }, using: &rng) else {
                return .refused(.sourceFull(maxPerSource))
            }
            remove(victim)
            evicted.append(victim)
        }
        if entries.count >= maxTotal {
            guard let victim = pickVictim(among: { _ in true }, using: &rng) else {
                return .refused(.tableFull(maxTotal))
            }
            remove(victim)
            evicted.append(victim)
        }
        entries[id] = Entry(source: source, stage: .connected)
        perSource[source, default: 0] += 1
        return .admitted(evicting: evicted)
    }

    /// The connection got further; a stage never goes back.
    public mutating func advance(_ id: UInt64, to stage: Stage) {
        guard let entry = entries[id], entry.stage < stage else { return }
        entries[id]!.stage = stage
    }

    /// The connection authenticated or closed.
    public mutating func remove(_ id: UInt64) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        let left = (perSource[entry.source] ?? 1) - 1
        perSource[entry.source] = left > 0 ? left : nil
    }

    /// A random one among those `matching` that got least far, if that is short of HELLO.
    private func pickVictim<R: RandomNumberGenerator>(among matching: (Entry) -> Bool, using rng: inout R) -> UInt64? {
        var lowest = Stage.helloReceived
        var candidates: [UInt64] = []
        for (id, entry) in entries where matching(entry) && entry.stage < .helloReceived {
            if entry.stage < lowest {
                lowest = entry.stage
                candidates.removeAll(keepingCapacity: true)
            }
            if entry.stage == lowest { candidates.append(id) }
        }
        guard !candidates.isEmpty else { return nil }
        // Dictionary order is not stable across runs: sort so a seeded generator repeats.
        candidates.sort()
        return candidates[Int.random(in: 0..<candidates.count, using: &rng)]
    }
}
