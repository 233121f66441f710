/// How a TCP connection ended in the capture.
public enum FlowEnding: Hashable, Sendable, CustomStringConvertible {
    /// FIN both ways.
    case closed
    /// An RST from this side (after whatever FINs came before it).
    case reset(by: FlowDirection)
    /// The SYN was answered by an RST: nothing listened.
    case refused
    /// No ending in the capture (it stops first).
    case none

    public var description: String {
        switch self {
        case .closed: return "closed"
        case .reset(let side): return "reset by \(side)"
        case .refused: return "refused"
        case .none: return "no ending"
        }
    }
}
