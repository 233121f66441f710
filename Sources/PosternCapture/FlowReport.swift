/// The outcome of replaying one flow, for the text report and `--json`.
public struct FlowReport: Hashable, Sendable, Codable {
    public enum Status: String, Hashable, Sendable, Codable {
        /// Every byte or datagram arrived as recorded, in order, with the recorded ending.
        case ok
        /// Something arrived differently (or not at all).
        case mismatch
        /// Not replayed: incomplete in the capture, or not replayable in this mode.
        case skipped
    }

    public var flow: Int
    public var transport: Flow.Transport
    public var initiator: String
    public var responder: String
    public var status: Status
    /// Why it was skipped or what went wrong beyond the checks (a connect that failed, a timeout).
    public var reason: String?
    /// One per direction that was replayed: initiator->responder (checked by the responder's side) and
    /// responder->initiator (checked by the initiator's side).
    public var directions: [DirectionCheck]
    /// From the flow's first send to its last check, milliseconds.
    public var milliseconds: Int?
    /// How the capture says the flow ended.
    public var recordedEnding: String

    public init(flow: Flow, status: Status, reason: String? = nil, directions: [DirectionCheck] = [], milliseconds: Int? = nil) {
        self.flow = flow.number
        self.transport = flow.transport
        self.initiator = flow.initiator.description
        self.responder = flow.responder.description
        self.status = status
        self.reason = reason
        self.directions = directions
        self.milliseconds = milliseconds
        self.recordedEnding = flow.transport == .tcp ? flow.ending.description : "-"
    }

    /// One line: "flow 3 tcp 10.0.0.1:1234 -> 10.0.0.2:80 ok: initiator 2/2 packets 120/120 bytes fin, ..."
    public var line: String {
        var text = "flow \(flow) \(transport.rawValue) \(initiator) -> \(responder) \(status.rawValue)"
        if let reason { text += " (\(reason))" }
        let parts = directions.map { d -> String in
            var part = "\(d.direction) \(d.deliveredPackets)/\(d.expectedPackets) packets \(d.receivedBytes)/\(d.expectedBytes) bytes"
            if transport == .tcp {
                part += " end \(d.observedEnding)" + (d.observedEnding == d.expectedEnding ? "" : " (recorded \(d.expectedEnding))")
            }
            if let offset = d.firstDifference { part += " first difference at byte \(offset)" }
            return part
        }
        if !parts.isEmpty { text += ": " + parts.joined(separator: ", ") }
        if let milliseconds { text += " in \(milliseconds) ms" }
        return text
    }
}
