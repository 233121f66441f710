import PosternCore

/// What a reload changes among the SOCKS5 listeners (`--socks`, config key `socks`): those running
/// now against those the new configuration wants. A listener whose address and mediator stay is
/// left alone with its connections; the others stop (`removed`) or start (`added`). A listener
/// that moves to another mediator on the same address is both, as `ForwardDiff` treats a forward
/// whose target changed. Pure: the caller performs it.
public struct SOCKSDiff: Sendable {
    public var unchanged: [SOCKSListenerSpec] = []
    public var removed: [SOCKSListenerSpec] = []
    public var added: [SOCKSListenerSpec] = []

    public var isEmpty: Bool { removed.isEmpty && added.isEmpty }

    /// A set of listeners that cannot run together: nothing of it is applied.
    public struct Conflict: Error, Hashable, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Nothing to change.
    public init() {}

    /// Throws `Conflict` when `wanted` holds two listeners on one address (or one listener twice).
    public init(running: [SOCKSListenerSpec], wanted: [SOCKSListenerSpec]) throws(Conflict) {
        var places: [ListenAddress: SOCKSListenerSpec] = [:]
        for spec in wanted {
            if let other = places[spec.listen] {
                throw Conflict(description: "'\(other)' and '\(spec)' listen on the same address")
            }
            places[spec.listen] = spec
        }
        let wantedSet = Set(wanted)
        let runningSet = Set(running)
        for spec in running {
            if wantedSet.contains(spec) { unchanged.append(spec) } else { removed.append(spec) }
        }
        added = wanted.filter { !runningSet.contains($0) }
    }
}
