/// Which counters of one channel direction have been accepted (docs/protocol.md §9.6): a sliding bitmap
/// of `size` counters below the highest one seen, kept as a ring of 64-bit blocks (RFC 6479, as in
/// WireGuard). In order, out of order within the window, far ahead (the window slides and forgets
/// what it passed), duplicates and counters older than the window are told apart in constant time.
///
/// The channel asks `check` before opening a datagram (a replay costs no decryption) and calls
/// `accept` only for a datagram that opened: a forged datagram never moves the window.
public struct ReplayWindow: Hashable, Sendable {
    public enum Verdict: Hashable, Sendable {
        /// Not seen before and within the window; `newest` when above every counter seen so far.
        case fresh(newest: Bool)
        /// Seen before.
        case duplicate
        /// Below the window: cannot be told from a replay, so refused.
        case tooOld
        /// The top value, 2^64 − 1, which no sender uses (§9.4): refused.
        case outOfRange
    }

    /// Blocks of 64 counters in the ring: 128 blocks = 8,192 bits.
    public static let blocks = 128
    /// Counters below the highest that are still told apart: one block less than the ring, as the block
    /// of the highest counter is only partly inside the window (8,128).
    public static let size = UInt64((blocks - 1) * 64)

    /// The highest counter accepted, nil before the first.
    public private(set) var highest: UInt64?
    private var ring: [UInt64]

    public init() {
        ring = Array(repeating: 0, count: Self.blocks)
    }

    /// What `accept` would answer, without changing anything.
    public func check(_ counter: UInt64) -> Verdict {
        guard counter < UInt64.max else { return .outOfRange }
        guard let highest else { return .fresh(newest: true) }
        if counter > highest { return .fresh(newest: true) }
        if highest - counter >= Self.size { return .tooOld }
        let (block, bit) = Self.position(counter)
        return ring[block] & bit != 0 ? .duplicate : .fresh(newest: false)
    }

    /// Records `counter` (of an authenticated datagram) if it is fresh; returns the verdict.
    @discardableResult
    public mutating func accept(_ counter: UInt64) -> Verdict {
        let verdict = check(counter)
        guard case .fresh(let newest) = verdict else { return verdict }
        if newest {
            // Clear the blocks the window slides over: those between the old highest's block and the
            // new one, at most the whole ring.
            let newBlock = counter / 64
            if let highest {
                let oldBlock = highest / 64
                let steps = min(newBlock - oldBlock, UInt64(Self.blocks))
                var i: UInt64 = 1
                while i <= steps {
                    ring[Int((oldBlock + i) % UInt64(Self.blocks))] = 0
                    i += 1
                }
            }
            highest = counter
        }
        let (block, bit) = Self.position(counter)
        ring[block] |= bit
        return verdict
    }

    private static func position(_ counter: UInt64) -> (block: Int, bit: UInt64) {
        (Int((counter / 64) % UInt64(blocks)), UInt64(1) << (counter % 64))
    }
}
