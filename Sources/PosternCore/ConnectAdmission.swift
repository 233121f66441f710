import NIOCore

/// Admission control for the CONNECTs a server sends one mediator. The mediator refuses CONNECTs
/// beyond its `--max-pending-connects` with `limitExceeded`, which the user would see as a reset; a
/// burst of connections (1,000 opened back to back) must instead wait its turn, as it does in a
/// kernel's listen backlog. So: at most `limit` CONNECTs in flight, the rest queued in arrival order
/// with a bound and a timeout. A refusal for limits still happens (the mediator's limit may be lower
/// than the server assumes, or its request rate runs out): the CONNECT goes back to the head of the
/// queue, the limit drops to what was in flight (learned from the mediator, not guessed), and only
/// after `maxRetries` such refusals in a row with no CONNECT succeeding in between (the mediator is
/// stuck, not busy) does the user see one; a busy mediator's refusals only delay a CONNECT, up to the
/// queue timeout, which counts from its arrival. Each `limit` successes raise the limit by
/// one again, up to the configured one (slowly: a mediator whose limit really is lower refuses one
/// CONNECT per round, not one per success). Pure: time comes in, tickets go out, the caller does the I/O.
public struct ConnectAdmission: Sendable {
    public struct Settings: Hashable, Sendable {
        /// CONNECTs in flight at once: the mediator's pending-connect limit (its default is 256).
        public var limit: Int
        /// CONNECTs waiting for a slot; beyond it new ones are refused at once.
        public var maxQueued: Int
        /// How long a CONNECT may wait for a slot.
        public var queueTimeout: TimeAmount
        /// Refusals for limits in a row, with no success in between, one CONNECT absorbs before its
        /// user sees one.
        public var maxRetries: Int

        public init(limit: Int = 256, maxQueued: Int = 8192, queueTimeout: TimeAmount = .seconds(30), maxRetries: Int = 3) {
            precondition(limit >= 1 && maxQueued >= 0 && maxRetries >= 0, "admission needs a limit of at least 1")
            self.limit = limit
            self.maxQueued = maxQueued
            self.queueTimeout = queueTimeout
            self.maxRetries = maxRetries
        }
    }

    /// One CONNECT, from request to its answer.
    public struct Ticket: Hashable, Sendable, Comparable {
        public let id: UInt64
        public static func < (a: Ticket, b: Ticket) -> Bool { a.id < b.id }
    }

    /// Why a CONNECT never reached the mediator (or came back refused once too often).
    public enum Refusal: Hashable, Sendable, CustomStringConvertible {
        case queueFull(limit: Int)
        case timedOut(after: TimeAmount)
        case sessionLost
        case retriesExhausted(retries: Int)

        public var description: String {
            switch self {
            case .queueFull(let limit): return "\(limit) connects already waiting for a slot"
            case .timedOut(let after): return "no connect slot at the mediator within \(after.seconds) s"
            case .sessionLost: return "the session ended while the connect waited for a slot"
            case .retriesExhausted(let retries): return "the mediator refused it for limits \(retries + 1) times"
            }
        }
    }

    public enum Decision: Hashable, Sendable {
        /// Send the CONNECT now.
        case send
        /// Wait: the ticket comes back from `finished` or `expire` later.
        case queued
        case refused(Refusal)
    }

    /// How one CONNECT ended.
    public enum Outcome: Hashable, Sendable {
        case done
        case failed
        /// FAILED `limitExceeded`: the mediator had no room.
        case refusedForLimits
    }

    /// What the caller does after an answer.
    public struct Step: Hashable, Sendable {
        /// Send these CONNECTs now (their slots just freed), in this order.
        public var send: [Ticket] = []
        /// The answered ticket went back to the queue (a refusal for limits it may retry).
        public var requeued = false
        /// The answered ticket's user gets this refusal (last resort).
        public var refused: Refusal?

        public init(send: [Ticket] = [], requeued: Bool = false, refused: Refusal? = nil) {
            self.send = send
            self.requeued = requeued
            self.refused = refused
        }
    }

    public struct Counters: Hashable, Sendable, Codable {
        /// CONNECTs sent to the mediator (retries included).
        public var sent: UInt64 = 0
        /// CONNECTs that had to wait for a slot.
        public var queued: UInt64 = 0
        /// Refusals for limits that went back to the queue.
        public var retried: UInt64 = 0
        public var refusedQueueFull: UInt64 = 0
        public var timedOut: UInt64 = 0
        public var sessionLost: UInt64 = 0
        public var retriesExhausted: UInt64 = 0
        public var cancelled: UInt64 = 0
    }

    public let settings: Settings
    /// The limit in force: the configured one, lowered by the mediator's refusals.
    public private(set) var limit: Int
    public private(set) var counters = Counters()
    /// Successes since the limit was last lowered or raised.
    private var successes = 0
    private var nextID: UInt64 = 1
    /// In-flight tickets and when they arrived (a retried one keeps its place and its deadline).
    private var inFlight: [Ticket: NIODeadline] = [:]
    /// Queued tickets in order; entries not in `waiting` were cancelled and are skipped.
    private var order = CircularBuffer<Ticket>()
    private var waiting: [Ticket: NIODeadline] = [:]
    /// Per retried ticket: refusals in a row, and `doneCount` when the last one came.
    private var retries: [Ticket: (count: Int, at: UInt64)] = [:]
    /// CONNECTs that succeeded this session.
    private var doneCount: UInt64 = 0

    public init(settings: Settings = Settings()) {
        self.settings = settings
        self.limit = settings.limit
    }

    public var inFlightCount: Int { inFlight.count }
    public var queuedCount: Int { waiting.count }
    /// When the CONNECT at the head of the queue times out, for the caller's timer (the head is the
    /// oldest but for retried ones, which go first and may be a little younger).
    public var nextDeadline: NIODeadline? {
        for t in order { if let at = waiting[t] { return at + settings.queueTimeout } }
        return nil
    }

    public mutating func request(now: NIODeadline) -> (Ticket, Decision) {
        let ticket = Ticket(id: nextID)
        nextID &+= 1
        if waiting.isEmpty && inFlight.count < limit {
            inFlight[ticket] = now
            counters.sent &+= 1
            return (ticket, .send)
        }
        guard waiting.count < settings.maxQueued else {
            counters.refusedQueueFull &+= 1
            return (ticket, .refused(.queueFull(limit: settings.maxQueued)))
        }
        waiting[ticket] = now
        order.append(ticket)
        counters.queued &+= 1
        return (ticket, .queued)
    }

    /// The mediator answered `ticket` (unknown tickets, e.g. after `sessionLost`, change nothing).
    public mutating func finished(_ ticket: Ticket, _ outcome: Outcome, now: NIODeadline) -> Step {
        guard let arrived = inFlight.removeValue(forKey: ticket) else { return Step() }
        var step = Step()
        switch outcome {
        case .done:
            retries[ticket] = nil
            doneCount &+= 1
            if limit < settings.limit {
                successes += 1
                if successes >= limit {
                    successes = 0
                    limit += 1
                }
            }
        case .failed:
            retries[ticket] = nil
        case .refusedForLimits:
            limit = max(1, inFlight.count)
            successes = 0
            // Refusals separated by a success elsewhere are congestion: the count starts again.
            let tried = retries[ticket].map { $0.at == doneCount ? $0.count : 0 } ?? 0
            if tried < settings.maxRetries {
                retries[ticket] = (tried + 1, doneCount)
                waiting[ticket] = arrived
                order.prepend(ticket)
                counters.retried &+= 1
                step.requeued = true
            } else {
                retries[ticket] = nil
                counters.retriesExhausted &+= 1
                step.refused = .retriesExhausted(retries: tried)
            }
        }
        step.send = fill()
        return step
    }

    /// The user gave up on a queued CONNECT (its connection closed): it never gets sent. Returns
    /// whether it was queued; an in-flight one still ends with `finished`.
    public mutating func cancel(_ ticket: Ticket) -> Bool {
        guard waiting.removeValue(forKey: ticket) != nil else { return false }
        retries[ticket] = nil
        counters.cancelled &+= 1
        compactIfSparse()
        return true
    }

    /// Queued CONNECTs whose time ran out: their users are reset.
    public mutating func expire(now: NIODeadline) -> [Ticket] {
        var expired: [Ticket] = []
        while let t = order.first {
            guard let at = waiting[t] else {
                order.removeFirst()
                continue
            }
            guard at + settings.queueTimeout <= now else { break }
            order.removeFirst()
            waiting[t] = nil
            retries[t] = nil
            expired.append(t)
        }
        counters.timedOut &+= UInt64(expired.count)
        return expired
    }

    /// The session ended: every queued CONNECT fails, in-flight ones are forgotten (their answers
    /// will never come), and the limit starts afresh for the next session.
    public mutating func sessionLost() -> [Ticket] {
        let lost = Array(order.filter { waiting[$0] != nil })
        counters.sessionLost &+= UInt64(lost.count)
        order.removeAll()
        waiting.removeAll()
        retries.removeAll()
        inFlight.removeAll()
        limit = settings.limit
        successes = 0
        return lost
    }

    private mutating func fill() -> [Ticket] {
        var send: [Ticket] = []
        while inFlight.count < limit, let t = order.popFirst() {
            guard let arrived = waiting.removeValue(forKey: t) else { continue }
            inFlight[t] = arrived
            counters.sent &+= 1
            send.append(t)
        }
        compactIfSparse()
        return send
    }

    /// Cancelled tickets stay in `order` until they reach its head; they must not pile up there.
    private mutating func compactIfSparse() {
        guard order.count > 2 * waiting.count + 64 else { return }
        order = CircularBuffer(order.filter { waiting[$0] != nil })
    }
}
