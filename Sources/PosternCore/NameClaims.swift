/// Who holds each mediator name on the server, and what happens when a second session claims a name
/// that is held (docs/security.md, "Taking over a name"). A live mediator keeps its name: the newcomer
/// waits while the holder is asked to answer a keepalive (`SessionStateMachine.probe`); an answer
/// refuses the newcomer ("name in use"), silence ends the holder and admits the newcomer. So a second
/// process with the same secret cannot push a working mediator off, and a mediator whose old session
/// went dead (a lost NAT mapping, a restart) is back within the probe's timeout.
///
/// Pure: the registry reports claims, answers and ends, and performs the actions. `ID` names a session.
public struct NameClaims<ID: Hashable & Sendable>: Sendable {
    public enum Action: Hashable, Sendable {
        /// `id` now holds the name: attach it.
        case admit(ID)
        /// Ask the holder to prove it is alive now.
        case probe(holder: ID)
        /// End `id`'s session: the name is held by `holder`, which is alive (or being asked).
        case refuse(ID, holder: ID)
    }

    public private(set) var holders: [String: ID] = [:]
    /// The newcomer waiting on the holder's answer, per name (at most one).
    public private(set) var waiting: [String: ID] = [:]

    public init() {}

    /// `id` proved the secret for `name`.
    public mutating func claim(_ name: String, by id: ID) -> [Action] {
        guard let holder = holders[name], holder != id else {
            holders[name] = id
            return [.admit(id)]
        }
        // One newcomer at a time: a second one while the holder is being asked is refused at once
        // (the first newcomer is the one admitted if the holder is dead).
        if let other = waiting[name], other != id { return [.refuse(id, holder: holder)] }
        waiting[name] = id
        return [.probe(holder: holder)]
    }

    /// The holder answered the probe: it is alive, so the newcomer is refused.
    public mutating func answered(_ name: String, by id: ID) -> [Action] {
        guard holders[name] == id, let newcomer = waiting.removeValue(forKey: name) else { return [] }
        return [.refuse(newcomer, holder: id)]
    }

    /// `id`'s session ended (for any reason: the unanswered probe, a GOAWAY, the connection).
    public mutating func ended(_ name: String, _ id: ID) -> [Action] {
        if waiting[name] == id {
            waiting[name] = nil
            return []
        }
        guard holders[name] == id else { return [] }
        holders[name] = nil
        guard let newcomer = waiting.removeValue(forKey: name) else { return [] }
        holders[name] = newcomer
        return [.admit(newcomer)]
    }
}
