import NIOCore
import PosternCore
import XCTest

/// Keepalive bookkeeping for one channel (docs/protocol.md §4.4), with time passed in.
final class LivenessTests: XCTestCase {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    private func at(_ seconds: Double) -> NIODeadline {
        t0 + .nanoseconds(Int64(seconds * 1e9))
    }

    func testStartsHearingNowAndPingsAfterOneInterval() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        XCTAssertEqual(l.interval, .seconds(10))
        XCTAssertEqual(l.deadTimeout, .seconds(30))
        XCTAssertEqual(l.lastHeard, t0)
        XCTAssertEqual(l.nextDeadline, at(10))
        XCTAssertEqual(l.tick(now: t0), Liveness.Action.none)
        XCTAssertEqual(l.tick(now: at(9.999_999_999)), Liveness.Action.none)
        XCTAssertEqual(l.tick(now: at(10)), .sendPing(token: 1))
        XCTAssertEqual(l.tick(now: at(10)), Liveness.Action.none, "one ping per interval")
    }

    func testPingsEveryIntervalWithIncreasingTokens() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        var tokens: [UInt64] = []
        for s in stride(from: 1.0, through: 100, by: 1) {
            l.heard(at: at(s))  // a chatty peer: never dead
            if case .sendPing(let token) = l.tick(now: at(s)) { tokens.append(token) }
        }
        XCTAssertEqual(tokens, Array(1...10), "whatever else flows, one ping every 10 s")
    }

    func testALateTickSchedulesTheNextPingFromNow() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        l.heard(at: at(24))
        XCTAssertEqual(l.tick(now: at(25)), .sendPing(token: 1), "one ping, not a burst for the missed ones")
        XCTAssertEqual(l.tick(now: at(25)), Liveness.Action.none)
        XCTAssertEqual(l.nextDeadline, at(35))
    }

    func testSilenceForTheDeadTimeoutIsDeath() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        XCTAssertEqual(l.tick(now: at(10)), .sendPing(token: 1))
        XCTAssertEqual(l.tick(now: at(20)), .sendPing(token: 2))
        XCTAssertEqual(l.tick(now: at(29.999)), Liveness.Action.none)
        XCTAssertEqual(l.tick(now: at(30)), .dead(silentFor: .seconds(30)), "death wins over the ping due at 30 s")
        XCTAssertEqual(l.tick(now: at(42)), .dead(silentFor: .seconds(42)))
    }

    func testHearingResetsTheDeadTimer() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        XCTAssertEqual(l.tick(now: at(10)), .sendPing(token: 1))
        XCTAssertEqual(l.tick(now: at(20)), .sendPing(token: 2))
        l.heard(at: at(25))
        XCTAssertEqual(l.lastHeard, at(25))
        XCTAssertEqual(l.tick(now: at(30)), .sendPing(token: 3), "alive: heard 5 s ago")
        XCTAssertEqual(l.tick(now: at(40)), .sendPing(token: 4))
        XCTAssertEqual(l.tick(now: at(50)), .sendPing(token: 5))
        XCTAssertEqual(l.nextDeadline, at(55))
        XCTAssertEqual(l.tick(now: at(54.9)), Liveness.Action.none)
        XCTAssertEqual(l.tick(now: at(55)), .dead(silentFor: .seconds(30)))
    }

    func testHearingNeverMovesBackInTime() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        l.heard(at: at(20))
        l.heard(at: at(5))
        XCTAssertEqual(l.lastHeard, at(20))
        l.heard(at: at(20))
        XCTAssertEqual(l.lastHeard, at(20))
    }

    func testNextDeadlineIsTheEarlierOfPingAndDeath() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(15), now: t0)
        XCTAssertEqual(l.nextDeadline, at(10))
        _ = l.tick(now: at(10))
        XCTAssertEqual(l.nextDeadline, at(15), "dead at 15 s comes before the ping at 20 s")
        l.heard(at: at(12))
        XCTAssertEqual(l.nextDeadline, at(20), "ping at 20 s comes before death at 27 s")

        let slowPing = Liveness(interval: .seconds(60), deadTimeout: .seconds(30), now: t0)
        XCTAssertEqual(slowPing.nextDeadline, at(30))
    }

    func testTickingAtNextDeadlineAlwaysDoesSomethingAndBeforeItNothing() {
        var rng = SeededGenerator(seed: 11)
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        var now = t0
        var lastToken: UInt64 = 0
        for _ in 0..<10_000 {
            now = now + .milliseconds(Int64(rng.next() % 4000))
            if rng.next() % 3 == 0 { l.heard(at: now) }
            let due = now >= l.nextDeadline
            let action = l.tick(now: now)
            XCTAssertEqual(action != Liveness.Action.none, due)
            switch action {
            case .sendPing(let token):
                XCTAssertEqual(token, lastToken + 1)
                lastToken = token
            case .dead(let silent):
                XCTAssertGreaterThanOrEqual(silent, .seconds(30))
                XCTAssertEqual(now - l.lastHeard, silent)
                l.heard(at: now)  // revive, to keep walking
            case .probeUnanswered:
                XCTFail("no probe was started")
            case .none:
                break
            }
        }
        XCTAssertGreaterThan(lastToken, 100)
    }

    // MARK: - Probe (another session claims the name)

    func testAProbePingsAtOnceAndOnlyItsOwnPongAnswersIt() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        XCTAssertEqual(l.startProbe(timeout: .seconds(3), now: at(1)), 1)
        XCTAssertNil(l.startProbe(timeout: .seconds(3), now: at(2)), "one probe at a time; the first deadline stands")
        XCTAssertEqual(l.nextDeadline, at(4), "the probe's deadline comes before the next ping")
        XCTAssertFalse(l.pong(token: 7), "a PONG for another ping does not answer the probe")
        l.heard(at: at(2))  // any frame keeps the session alive, but only the PONG answers the probe
        XCTAssertTrue(l.pong(token: 1))
        XCTAssertFalse(l.pong(token: 1), "answered once")
        XCTAssertNil(l.probe)
        XCTAssertEqual(l.tick(now: at(5)), Liveness.Action.none, "answered: no verdict at the old deadline")
        XCTAssertEqual(l.tick(now: at(10)), .sendPing(token: 2), "regular pings go on with the next token")
    }

    func testAnUnansweredProbeIsAVerdictAtItsDeadlineEvenWhileOtherFramesArrive() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        XCTAssertEqual(l.startProbe(timeout: .seconds(3), now: at(1)), 1)
        l.heard(at: at(2))
        XCTAssertEqual(l.tick(now: at(3.999)), Liveness.Action.none)
        XCTAssertEqual(l.tick(now: at(4.5)), .probeUnanswered(after: .milliseconds(3500)))
        XCTAssertNil(l.probe)
    }

    func testTheRoundTripIsMeasuredFromTheLatestPingToItsPong() {
        var l = Liveness(interval: .seconds(10), deadTimeout: .seconds(30), now: t0)
        XCTAssertNil(l.roundTrip)
        XCTAssertEqual(l.tick(now: at(10)), .sendPing(token: 1))
        XCTAssertFalse(l.pong(token: 9, at: at(10.5)), "a PONG for no ping of ours")
        XCTAssertNil(l.roundTrip, "a forged token measures nothing")
        XCTAssertFalse(l.pong(token: 1, at: at(10.25)), "a keepalive PONG answers no probe")
        XCTAssertEqual(l.roundTrip, .milliseconds(250))
        XCTAssertFalse(l.pong(token: 1, at: at(15)), "a replayed PONG")
        XCTAssertEqual(l.roundTrip, .milliseconds(250), "a PONG counts once")
        XCTAssertEqual(l.tick(now: at(20)), .sendPing(token: 2))
        XCTAssertFalse(l.pong(token: 1, at: at(20.1)), "the PONG of an older ping")
        XCTAssertEqual(l.roundTrip, .milliseconds(250))
        XCTAssertEqual(l.startProbe(timeout: .seconds(3), now: at(21)), 3)
        XCTAssertTrue(l.pong(token: 3, at: at(21.04)))
        XCTAssertEqual(l.roundTrip, .milliseconds(40), "a probe's PONG measures too")
    }
}
