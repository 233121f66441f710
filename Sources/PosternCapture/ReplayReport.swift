/// A whole replay's outcome: one `FlowReport` per flow of the capture, replayed or skipped.
public struct ReplayReport: Hashable, Sendable, Codable {
    public var capture: String
    public var mode: String
    public var flows: [FlowReport]

    public var replayed: Int { flows.filter { $0.status != .skipped }.count }
    public var ok: Int { flows.filter { $0.status == .ok }.count }
    public var mismatched: Int { flows.filter { $0.status == .mismatch }.count }
    public var skipped: Int { flows.filter { $0.status == .skipped }.count }
    /// Something complete was not delivered as recorded.
    public var failed: Bool { mismatched > 0 }

    public init(capture: String, mode: String, flows: [FlowReport]) {
        self.capture = capture
        self.mode = mode
        self.flows = flows
    }

    /// Why a flow is not replayed in stream mode; nil when it is.
    public static func skipReason(_ flow: Flow) -> String? {
        if flow.transport == .icmp { return "ICMP \(flow.summary): stream mode carries TCP and UDP only (TUN mode replays IP packets)" }
        if !flow.isComplete { return "incomplete in the capture: " + flow.incomplete.joined(separator: "; ") }
        return nil
    }

    /// Puts the two sides' checks of each flow together. `initiatorSide[n]` checks the responder's
    /// bytes (what the initiator received), `responderSide[n]` the initiator's.
    public static func assemble(
        capture: String, mode: String, flows: [Flow],
        initiatorSide: [Int: SideResult], responderSide: [Int: SideResult]
    ) -> ReplayReport {
        var reports: [FlowReport] = []
        for flow in flows {
            if let reason = skipReason(flow) {
                reports.append(FlowReport(flow: flow, status: .skipped, reason: reason))
                continue
            }
            var problems: [String] = []
            var directions: [DirectionCheck] = []
            var milliseconds = 0
            for (name, result) in [("responder", responderSide[flow.number]), ("initiator", initiatorSide[flow.number])] {
                guard let result else {
                    problems.append("no result from the \(name) side")
                    continue
                }
                if let check = result.check { directions.append(check) }
                if let problem = result.problem { problems.append("\(name) side: \(problem)") }
                milliseconds = max(milliseconds, result.milliseconds)
            }
            let ok = problems.isEmpty && directions.count == 2 && directions.allSatisfy(\.ok)
            reports.append(
                FlowReport(
                    flow: flow, status: ok ? .ok : .mismatch, reason: problems.isEmpty ? nil : problems.joined(separator: "; "),
                    directions: directions, milliseconds: milliseconds))
        }
        return ReplayReport(capture: capture, mode: mode, flows: reports)
    }

    /// The text report: a line per flow, then the totals.
    public var text: String {
        var lines = flows.map(\.line)
        lines.append("\(capture): \(flows.count) flows, \(replayed) replayed: \(ok) ok, \(mismatched) mismatched; \(skipped) skipped")
        return lines.joined(separator: "\n")
    }
}

/// One side's result for one flow: its check of the direction it received, how long it took, and
/// what went wrong beyond the check (no connection, a timeout).
public struct SideResult: Hashable, Sendable, Codable {
    public var flow: Int
    public var check: DirectionCheck?
    public var milliseconds: Int
    public var problem: String?

    public init(flow: Int, check: DirectionCheck?, milliseconds: Int, problem: String?) {
        self.flow = flow
        self.check = check
        self.milliseconds = milliseconds
        self.problem = problem
    }
}
