import NIOCore
import PosternCore
import XCTest

/// The heap is given back once after a load, never while it lasts, never for nothing.
final class HeapTrimPolicyTests: XCTestCase {
    private let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)

    /// Feeds one sample per second, each using `cpu[i]` of CPU; returns the seconds at which it trimmed.
    private func run(_ policy: inout HeapTrimPolicy, _ cpuPerSecond: [TimeAmount]) -> [Int] {
        var total = TimeAmount.seconds(3)
        var trimmedAt: [Int] = []
        _ = policy.sample(cpu: total, now: t0)
        for (i, used) in cpuPerSecond.enumerated() {
            total = total + used
            if policy.sample(cpu: total, now: t0 + .seconds(Int64(i + 1))) { trimmedAt.append(i + 1) }
        }
        return trimmedAt
    }

    func testAnIdleProcessIsNeverTrimmed() {
        var policy = HeapTrimPolicy()
        XCTAssertEqual(run(&policy, Array(repeating: .milliseconds(2), count: 600)), [])
    }

    func testOneTrimWhenTheLoadStops() {
        var policy = HeapTrimPolicy()
        let load = Array(repeating: TimeAmount.milliseconds(900), count: 8)
        let quiet = Array(repeating: TimeAmount.milliseconds(3), count: 30)
        XCTAssertEqual(run(&policy, load + quiet), [9], "the first quiet second after the load, once")
        XCTAssertEqual(policy.trims, 1)
    }

    func testNoTrimWhileTheLoadLasts() {
        var policy = HeapTrimPolicy()
        XCTAssertEqual(run(&policy, Array(repeating: .milliseconds(150), count: 120)), [], "15% of a core is load")
    }

    func testEachLoadIsFollowedByItsOwnTrim() {
        var policy = HeapTrimPolicy()
        let load = Array(repeating: TimeAmount.milliseconds(500), count: 3)
        let quiet = Array(repeating: TimeAmount.milliseconds(1), count: 5)
        XCTAssertEqual(run(&policy, load + quiet + load + quiet), [4, 12])
    }

    func testLittleWorkIsNotWorthATrim() {
        var policy = HeapTrimPolicy()
        // Keepalives and a few connections: well under workWorthTrimming in all.
        let trickle = [TimeAmount.milliseconds(40), .milliseconds(1), .milliseconds(30), .milliseconds(1)]
        XCTAssertEqual(run(&policy, trickle + Array(repeating: .milliseconds(1), count: 20)), [])
    }

    func testQuietWorkNeverAddsUpToATrim() {
        var policy = HeapTrimPolicy()
        // 15 ms a second is quiet (1.5%): a thousand idle connections' keepalives, for ten minutes.
        XCTAssertEqual(run(&policy, Array(repeating: .milliseconds(15), count: 600)), [])
    }

    func testAShortBurstCountsOnlyIfItIsLoad() {
        var policy = HeapTrimPolicy()
        // 1,000 connections opened in a second: 300 ms of CPU, then quiet.
        XCTAssertEqual(run(&policy, [.milliseconds(1), .milliseconds(300), .milliseconds(1)]), [3])
    }

    func testMemoryFreedWithoutLoadIsTrimmedOnce() {
        var policy = HeapTrimPolicy()
        let mib = 1 << 20
        // Users that stopped reading: no CPU, the free heap grows by 20 MiB when they go.
        var trimmedAt: [Int] = []
        let free = [2, 2, 2, 22, 22, 22, 22, 23, 30, 30].map { $0 * mib }
        for (i, f) in free.enumerated() where policy.sample(cpu: .seconds(3), freeHeap: f, now: t0 + .seconds(Int64(i))) {
            trimmedAt.append(i)
        }
        XCTAssertEqual(trimmedAt, [3, 8], "once at +20 MiB, not again at +1 MiB, again at +8 MiB")
    }

    func testAClockThatDoesNotAdvanceNeverTrims() {
        var policy = HeapTrimPolicy()
        XCTAssertFalse(policy.sample(cpu: .seconds(1), now: t0))
        XCTAssertFalse(policy.sample(cpu: .seconds(9), now: t0))
        XCTAssertFalse(policy.sample(cpu: .seconds(9), now: t0 - .seconds(1)))
    }
}
