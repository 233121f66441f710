import PosternWire

/// What a reload changes (`postern ctl reload`, SIGHUP): the forwards running now against those the
/// new configuration wants. A forward that stays the same — same transport, side, mediator, listen
/// address, target and options, however its text is spelled — is left alone with its connections; the others
/// are stopped (`removed`) or started (`added`). A forward whose target changed on the same listen
/// address (or only its options) is both, and listed in `changed` too (it must stop before its successor can bind).
/// Pure: the caller performs it.
public struct ForwardDiff: Sendable {
    public var unchanged: [ForwardSpec] = []
    public var removed: [ForwardSpec] = []
    public var added: [ForwardSpec] = []
    /// Pairs (old, new) on the same listen address with something else changed.
    public var changed: [(old: ForwardSpec, new: ForwardSpec)] = []

    public var isEmpty: Bool { removed.isEmpty && added.isEmpty }

    /// A configuration that cannot be run as a whole: nothing of it is applied.
    public struct Conflict: Error, Hashable, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The same forward whatever its spelling.
    struct Identity: Hashable {
        var transport: Frame.Transport
        var direction: ForwardSpec.Direction
        var mediator: String
        var listen: ListenAddress
        var target: Endpoint
        var options: ForwardOptions
    }

    /// Where a forward listens: two forwards cannot share it.
    struct Place: Hashable {
        var transport: Frame.Transport
        /// The mediator for forwards that listen on it; nil for the server.
        var mediator: String?
        var listen: ListenAddress
    }

    /// Whether `a` and `b` are one forward, however spelled.
    public static func same(_ a: ForwardSpec, _ b: ForwardSpec) -> Bool { identity(a) == identity(b) }

    /// What `ctl forwards remove SPEC` stops: the same forward, or — when SPEC has no options — the
    /// forward that is SPEC with options, so a forward can be removed without repeating them.
    public static func named(_ running: ForwardSpec, by spec: ForwardSpec) -> Bool {
        guard spec.options.isEmpty else { return same(running, spec) }
        var plain = running
        plain.options = ForwardOptions()
        return same(plain, spec)
    }

    static func identity(_ s: ForwardSpec) -> Identity {
        Identity(
            transport: s.transport, direction: s.direction, mediator: s.mediator, listen: s.listenAddress, target: s.target,
            options: s.options)
    }

    static func place(_ s: ForwardSpec) -> Place {
        Place(transport: s.transport, mediator: s.direction == .fromMediator ? s.mediator : nil, listen: s.listenAddress)
    }

    /// Throws `Conflict` when `wanted` holds two forwards on one listen address (or one forward twice).
    public init(running: [ForwardSpec], wanted: [ForwardSpec]) throws {
        var places: [Place: ForwardSpec] = [:]
        for spec in wanted {
            if let other = places[Self.place(spec)] {
                throw Conflict(description: "forwards '\(other)' and '\(spec)' listen on the same address")
            }
            places[Self.place(spec)] = spec
        }
        let wantedIDs = Set(wanted.map(Self.identity))
        let runningIDs = Set(running.map(Self.identity))
        var runningPlaces: [Place: ForwardSpec] = [:]
        for spec in running {
            if wantedIDs.contains(Self.identity(spec)) {
                unchanged.append(spec)
            } else {
                removed.append(spec)
                runningPlaces[Self.place(spec)] = spec
            }
        }
        for spec in wanted where !runningIDs.contains(Self.identity(spec)) {
            added.append(spec)
            if let old = runningPlaces[Self.place(spec)] { changed.append((old, spec)) }
        }
    }
}
