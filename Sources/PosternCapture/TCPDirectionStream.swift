/// One direction of a TCP connection put back in order: segments are placed by sequence number,
/// retransmitted bytes are dropped (the first copy wins where copies differ), segments that arrive
/// early wait until the bytes before them arrive. Offsets are stream offsets (0 = first byte after
/// the SYN); sequence numbers may wrap.
public struct TCPDirectionStream: Sendable {
    /// Sequence number of the first byte (the SYN's sequence number + 1).
    public private(set) var firstSequence: UInt32?
    /// Bytes in order so far.
    public private(set) var delivered = 0
    /// Offset right after the last byte, from the FIN.
    public private(set) var finOffset: Int?
    public private(set) var finDelivered = false
    /// Segments that carried only bytes already delivered.
    public private(set) var retransmissions = 0
    /// Segments that arrived before bytes they follow.
    public private(set) var outOfOrder = 0
    private var waiting: [Int: ArraySlice<UInt8>] = [:]

    /// Bounds what a broken or hostile capture may make wait (bytes held out of order).
    public static let maxWaitingBytes = 64 << 20

    public init() {}

    /// The SYN fixes the first sequence number (a retransmitted SYN changes nothing).
    public mutating func start(synSequence: UInt32) {
        if firstSequence == nil { firstSequence = synSequence &+ 1 }
    }

    /// Offset of a sequence number, unwrapped next to what was delivered.
    func offset(of sequence: UInt32) -> Int {
        let base = firstSequence! &+ UInt32(truncatingIfNeeded: delivered)
        return delivered + Int(Int32(bitPattern: sequence &- base))
    }

    /// Adds a segment's payload and FIN; returns what became deliverable, in order: data chunks
    /// (each with the packet that carried it) and then the FIN once every byte before it is there.
    public mutating func add(sequence: UInt32, payload: ArraySlice<UInt8>, fin: Bool, packet: Int, time: Int64) -> [FlowEvent.Kind] {
        // No SYN seen: the first segment fixes the numbering (the flow is marked incomplete anyway).
        if firstSequence == nil { firstSequence = sequence }
        let at = offset(of: sequence)
        var out: [FlowEvent.Kind] = []
        if fin, finOffset == nil { finOffset = at + payload.count }
        if !payload.isEmpty {
            if at + payload.count <= delivered {
                retransmissions += 1
            } else if at > delivered {
                outOfOrder += 1
                let existing = waiting[at]?.count ?? 0
                if payload.count > existing && waitingBytes + payload.count - existing <= Self.maxWaitingBytes {
                    waiting[at] = payload
                }
            } else {
                let fresh = payload.dropFirst(delivered - at)
                delivered += fresh.count
                out.append(.data(Array(fresh)))
            }
            out += drain()
        }
        if let finOffset, !finDelivered, delivered >= finOffset {
            finDelivered = true
            out.append(.fin)
        }
        return out
    }

    private var waitingBytes: Int { waiting.values.reduce(0) { $0 + $1.count } }

    private mutating func drain() -> [FlowEvent.Kind] {
        var out: [FlowEvent.Kind] = []
        while let next = waiting.keys.filter({ $0 <= delivered }).min() {
            let bytes = waiting.removeValue(forKey: next)!
            if next + bytes.count > delivered {
                let fresh = bytes.dropFirst(delivered - next)
                delivered += fresh.count
                out.append(.data(Array(fresh)))
            }
        }
        return out
    }

    /// Bytes are missing: some arrived after a hole that never filled, or the FIN lies past the bytes.
    public var hasGap: Bool {
        !waiting.isEmpty || (finOffset.map { delivered < $0 } ?? false)
    }
}
