import NIOCore
import PosternCore
import XCTest

final class ConnectAdmissionTests: XCTestCase {
    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func settings(limit: Int = 4, maxQueued: Int = 100, timeout: TimeAmount = .seconds(10), retries: Int = 2)
        -> ConnectAdmission.Settings
    {
        ConnectAdmission.Settings(limit: limit, maxQueued: maxQueued, queueTimeout: timeout, maxRetries: retries)
    }

    func testABurstSendsUpToTheLimitAndQueuesTheRestInOrder() {
        var a = ConnectAdmission(settings: settings(limit: 4))
        let requests = (0..<1000).map { _ in a.request(now: t0) }
        XCTAssertEqual(requests.prefix(4).map(\.1), Array(repeating: .send, count: 4))
        XCTAssertEqual(Set(requests[4..<104].map(\.1)), [.queued], "none refused while the queue has room")
        XCTAssertEqual(a.inFlightCount, 4)
        XCTAssertEqual(a.queuedCount, 100, "the queue bound")
        XCTAssertEqual(a.counters.refusedQueueFull, 896)
        XCTAssertEqual(requests[104].1, .refused(.queueFull(limit: 100)))
        // Each answer lets exactly the next one in arrival order go.
        var sent = requests.prefix(4).map(\.0)
        var next = 4
        while !sent.isEmpty {
            let t = sent.removeFirst()
            let step = a.finished(t, .done, now: t0)
            if next < 104 {
                XCTAssertEqual(step.send, [requests[next].0])
                next += 1
            } else {
                XCTAssertEqual(step.send, [])
            }
            sent += step.send
            XCTAssertLessThanOrEqual(a.inFlightCount, 4)
        }
        XCTAssertEqual(a.inFlightCount, 0)
        XCTAssertEqual(a.queuedCount, 0)
        XCTAssertEqual(a.counters.sent, 104)
    }

    func testAnswersInAnyOrderFreeSlots() {
        var a = ConnectAdmission(settings: settings(limit: 3))
        let r = (0..<6).map { _ in a.request(now: t0).0 }
        XCTAssertEqual(a.finished(r[2], .failed, now: t0).send, [r[3]])
        XCTAssertEqual(a.finished(r[0], .done, now: t0).send, [r[4]])
        XCTAssertEqual(a.finished(r[0], .done, now: t0).send, [], "a second answer for the same ticket changes nothing")
        XCTAssertEqual(a.finished(r[4], .done, now: t0).send, [r[5]])
        XCTAssertEqual(a.inFlightCount, 3)
    }

    func testNewRequestsDoNotOvertakeTheQueue() {
        var a = ConnectAdmission(settings: settings(limit: 1))
        let (first, _) = a.request(now: t0)
        let (second, d2) = a.request(now: t0)
        XCTAssertEqual(d2, .queued)
        let step = a.finished(first, .done, now: t0)
        XCTAssertEqual(step.send, [second])
        // The slot is taken again: the next one waits even though nothing is queued ahead of it.
        XCTAssertEqual(a.request(now: t0).1, .queued)
    }

    func testQueuedConnectsTimeOutAndTheTimerFollowsTheHead() {
        var a = ConnectAdmission(settings: settings(limit: 1, timeout: .seconds(10)))
        _ = a.request(now: t0)
        XCTAssertNil(a.nextDeadline, "nothing queued, nothing to time")
        let (q1, _) = a.request(now: t0 + .seconds(1))
        let (q2, _) = a.request(now: t0 + .seconds(5))
        XCTAssertEqual(a.nextDeadline, t0 + .seconds(11))
        XCTAssertEqual(a.expire(now: t0 + .seconds(10)), [])
        XCTAssertEqual(a.expire(now: t0 + .seconds(11)), [q1])
        XCTAssertEqual(a.nextDeadline, t0 + .seconds(15))
        XCTAssertEqual(a.expire(now: t0 + .seconds(60)), [q2])
        XCTAssertNil(a.nextDeadline)
        XCTAssertEqual(a.queuedCount, 0)
        XCTAssertEqual(a.counters.timedOut, 2)
    }

    func testARefusalForLimitsRequeuesAtTheHeadAndLowersTheLimit() {
        var a = ConnectAdmission(settings: settings(limit: 4, retries: 2))
        let r = (0..<6).map { _ in a.request(now: t0).0 }
        // The mediator's real limit is 3: the fourth comes back refused.
        let step = a.finished(r[3], .refusedForLimits, now: t0)
        XCTAssertTrue(step.requeued)
        XCTAssertNil(step.refused)
        XCTAssertEqual(step.send, [], "three still in flight: the learned limit")
        XCTAssertEqual(a.limit, 3)
        XCTAssertEqual(a.finished(r[0], .done, now: t0).send, [r[3]], "the refused one goes first, before r4")
        XCTAssertEqual(a.finished(r[1], .done, now: t0).send, [r[4]])
        XCTAssertEqual(a.limit, 3, "one success per slot before the limit grows")
        XCTAssertEqual(a.finished(r[2], .done, now: t0).send, [r[5]], "the third success raises it to 4: room for two")
        XCTAssertEqual(a.limit, 4)
        XCTAssertEqual(a.inFlightCount, 3, "r3, r4, r5 and nothing else queued")
        XCTAssertEqual(a.request(now: t0).1, .send)
        XCTAssertEqual(a.request(now: t0).1, .queued, "never past the configured limit")
        XCTAssertEqual(a.counters.retried, 1)
    }

    func testTooManyRefusalsReachTheUser() {
        var a = ConnectAdmission(settings: settings(limit: 2, retries: 2))
        let (t, _) = a.request(now: t0)
        for _ in 0..<2 {
            let step = a.finished(t, .refusedForLimits, now: t0)
            XCTAssertTrue(step.requeued)
            XCTAssertEqual(step.send, [t], "nothing else in flight: it goes again at once")
        }
        let last = a.finished(t, .refusedForLimits, now: t0)
        XCTAssertFalse(last.requeued)
        XCTAssertEqual(last.refused, .retriesExhausted(retries: 2))
        XCTAssertEqual(a.inFlightCount, 0)
        XCTAssertEqual(a.queuedCount, 0)
        XCTAssertEqual(a.counters.retriesExhausted, 1)
        XCTAssertEqual(a.limit, 1, "never below one")
    }

    func testRefusalsBetweenSuccessesOnlyDelayAndTheQueueTimeoutStillBounds() {
        var a = ConnectAdmission(settings: settings(limit: 2, timeout: .seconds(10), retries: 1))
        let (probe, _) = a.request(now: t0)
        let (other, _) = a.request(now: t0)
        // The same connect refused again and again, but each time after another one succeeded: the
        // mediator is busy, not stuck, so it keeps its place.
        var current = other
        for i in 0..<5 {
            let step = a.finished(probe, .refusedForLimits, now: t0 + .seconds(Int64(i)))
            XCTAssertTrue(step.requeued, "refusal \(i + 1) after a success elsewhere")
            let done = a.finished(current, .done, now: t0 + .seconds(Int64(i)))
            XCTAssertEqual(done.send, [probe])
            let (next, d) = a.request(now: t0 + .seconds(Int64(i)))
            XCTAssertEqual(d, .send)
            current = next
        }
        // Two in a row with nothing succeeding in between: stuck, the user sees it.
        XCTAssertTrue(a.finished(probe, .refusedForLimits, now: t0 + .seconds(5)).requeued)
        XCTAssertEqual(a.finished(current, .failed, now: t0 + .seconds(5)).send, [probe])
        XCTAssertEqual(a.finished(probe, .refusedForLimits, now: t0 + .seconds(5)).refused, .retriesExhausted(retries: 1))
        // And a connect refused into the queue keeps its arrival time: the timeout counts from there.
        var b = ConnectAdmission(settings: settings(limit: 2, timeout: .seconds(10), retries: 5))
        let (x, _) = b.request(now: t0)
        let (y, _) = b.request(now: t0 + .seconds(9))
        XCTAssertTrue(b.finished(x, .refusedForLimits, now: t0 + .seconds(9)).requeued)
        XCTAssertEqual(b.nextDeadline, t0 + .seconds(10))
        XCTAssertEqual(b.expire(now: t0 + .seconds(10)), [x])
        XCTAssertEqual(b.finished(y, .done, now: t0 + .seconds(10)).send, [])
    }

    func testSessionLossHandsBackEveryQueuedConnectAndForgetsTheRest() {
        var a = ConnectAdmission(settings: settings(limit: 2))
        let r = (0..<5).map { _ in a.request(now: t0).0 }
        XCTAssertTrue(a.cancel(r[3]))
        XCTAssertEqual(a.sessionLost(), [r[2], r[4]])
        XCTAssertEqual(a.inFlightCount, 0)
        XCTAssertEqual(a.queuedCount, 0)
        XCTAssertNil(a.nextDeadline)
        // The in-flight ones' answers (failures, as the session ended) must not send anything.
        XCTAssertEqual(a.finished(r[0], .failed, now: t0), ConnectAdmission.Step())
        XCTAssertEqual(a.request(now: t0).1, .send, "a new session starts with free slots")
    }

    func testCancelledConnectsAreSkippedAndDoNotPileUp() {
        var a = ConnectAdmission(settings: settings(limit: 1, maxQueued: 10_000))
        let (first, _) = a.request(now: t0)
        var kept: ConnectAdmission.Ticket?
        for i in 0..<5000 {
            let (t, _) = a.request(now: t0)
            if i == 4999 { kept = t } else { XCTAssertTrue(a.cancel(t)) }
        }
        XCTAssertFalse(a.cancel(first), "an in-flight connect is not cancelled")
        XCTAssertEqual(a.queuedCount, 1)
        XCTAssertEqual(a.finished(first, .done, now: t0).send, [kept!])
        XCTAssertEqual(a.counters.cancelled, 4999)
    }

    /// Random bursts, answers in random order, cancels, timeouts and session losses: every ticket
    /// ends exactly once, the limit is never exceeded, and nothing is left behind.
    func testRandomHistoriesNeverLeakOrExceedTheLimit() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let limit = Int.random(in: 1...8, using: &rng)
            var a = ConnectAdmission(settings: settings(limit: limit, maxQueued: Int.random(in: 0...30, using: &rng), retries: 1))
            var now = t0
            var inFlight: [ConnectAdmission.Ticket] = []
            var queued: Set<ConnectAdmission.Ticket> = []
            var ended: Set<ConnectAdmission.Ticket> = []
            func end(_ t: ConnectAdmission.Ticket) { XCTAssertTrue(ended.insert(t).inserted, "ticket \(t.id) ended twice") }
            func apply(_ step: ConnectAdmission.Step) {
                for t in step.send {
                    XCTAssertNotNil(queued.remove(t), "only queued tickets are sent later")
                    inFlight.append(t)
                }
            }
            for _ in 0..<300 {
                now = now + .milliseconds(Int64.random(in: 0...500, using: &rng))
                switch Int.random(in: 0..<10, using: &rng) {
                case 0...3:
                    let (t, d) = a.request(now: now)
                    switch d {
                    case .send: inFlight.append(t)
                    case .queued: queued.insert(t)
                    case .refused: end(t)
                    }
                case 4...6 where !inFlight.isEmpty:
                    let t = inFlight.remove(at: Int.random(in: 0..<inFlight.count, using: &rng))
                    let outcome = [ConnectAdmission.Outcome.done, .failed, .refusedForLimits].randomElement(using: &rng)!
                    let step = a.finished(t, outcome, now: now)
                    if step.requeued { queued.insert(t) } else { end(t) }
                    apply(step)
                case 7 where !queued.isEmpty:
                    let t = queued.randomElement(using: &rng)!
                    XCTAssertTrue(a.cancel(t))
                    queued.remove(t)
                    end(t)
                case 8:
                    for t in a.expire(now: now) {
                        XCTAssertNotNil(queued.remove(t))
                        end(t)
                    }
                case 9 where Int.random(in: 0..<10, using: &rng) == 0:
                    for t in a.sessionLost() {
                        XCTAssertNotNil(queued.remove(t))
                        end(t)
                    }
                    for t in inFlight { end(t) }
                    inFlight.removeAll()
                default: break
                }
                XCTAssertLessThanOrEqual(a.inFlightCount, a.limit)
                XCTAssertLessThanOrEqual(a.limit, limit)
                XCTAssertEqual(a.inFlightCount, inFlight.count)
                XCTAssertEqual(a.queuedCount, queued.count)
                if a.inFlightCount < a.limit { XCTAssertEqual(a.queuedCount, 0, "a free slot with work waiting") }
            }
            // Drain: answer everything; whatever is left queued is handed back on session loss.
            while !inFlight.isEmpty {
                let t = inFlight.removeFirst()
                let step = a.finished(t, .done, now: now)
                end(t)
                apply(step)
            }
            XCTAssertEqual(a.queuedCount, 0)
            XCTAssertEqual(Set(a.sessionLost()), queued)
        }
    }
}

final class AcceptGateTests: XCTestCase {
    func testPausesAtTheMarkAndResumesHalfwayDown() {
        var g = AcceptGate(pauseAt: 4)
        XCTAssertEqual((0..<3).map { _ in g.arrived() }, [false, false, false])
        XCTAssertTrue(g.arrived(), "the fourth waiting connection shuts the gate")
        XCTAssertFalse(g.arrived(), "already shut: said once")
        XCTAssertEqual(g.waiting, 5)
        XCTAssertEqual((0..<2).map { _ in g.settled() }, [false, false])
        XCTAssertEqual(g.waiting, 3)
        XCTAssertTrue(g.settled(), "at two (half of four) it opens")
        XCTAssertFalse(g.isPaused)
        XCTAssertFalse(g.settled())
        XCTAssertFalse(g.settled())
        XCTAssertFalse(g.settled(), "settling below zero does nothing")
        XCTAssertEqual(g.waiting, 0)
    }

    func testAGateOfOnePausesAtEveryConnection() {
        var g = AcceptGate(pauseAt: 1)
        XCTAssertTrue(g.arrived())
        XCTAssertTrue(g.settled())
        XCTAssertTrue(g.arrived())
    }
}
