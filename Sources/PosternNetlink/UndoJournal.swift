/// The changes one TUN mode device made, in the order made, so they are undone newest first. Pure:
/// `NetworkConfigurator` records a change here (and in the state file) *before* making it, so a
/// crash at any point leaves a record of everything that may exist; undoing something that is not
/// there is harmless.
public struct UndoJournal: Hashable, Sendable {
    public private(set) var changes: [NetworkChange] = []

    public init(changes: [NetworkChange] = []) {
        for c in changes { record(c) }
    }

    /// Records a change about to be made. A sysctl recorded already keeps its first previous value:
    /// that is the value from before we touched it, the one to restore.
    public mutating func record(_ change: NetworkChange) {
        if case .sysctl(let path, _) = change,
            changes.contains(where: { if case .sysctl(path, _) = $0 { return true } else { return false } })
        {
            return
        }
        guard !changes.contains(change) else { return }
        changes.append(change)
    }

    /// Forgets a change that was not made after all (the kernel refused it): undoing it could remove
    /// what someone else made (an address that was already there).
    public mutating func forget(_ change: NetworkChange) {
        changes.removeAll { $0 == change }
    }

    /// What to undo, newest first: routes and neighbour entries before the addresses and devices they
    /// hang on, sysctls restored after their interfaces stopped carrying traffic.
    public var undoOrder: [NetworkChange] { changes.reversed() }

    public var isEmpty: Bool { changes.isEmpty }

    /// The state file's text: one change per line.
    public var text: String { changes.map { $0.line + "\n" }.joined() }

    /// Reads a state file. Lines that do not parse are returned apart (reported, never acted on).
    public static func parse(_ text: String) -> (journal: UndoJournal, rejected: [String]) {
        var journal = UndoJournal()
        var rejected: [String] = []
        for line in text.split(separator: "\n") where !line.allSatisfy(\.isWhitespace) {
            if let change = NetworkChange(line: line) {
                journal.record(change)
            } else {
                rejected.append(String(line.prefix(200)))
            }
        }
        return (journal, rejected)
    }
}
