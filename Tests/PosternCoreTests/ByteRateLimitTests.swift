import NIOCore
import PosternCore
import XCTest

/// A forward's `rate=`: streams spend into debt and wait it off, datagrams take only what is there.
final class ByteRateLimitTests: XCTestCase {
    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func testTheBurstIsATenthOfASecondAndAtLeast64KiB() {
        XCTAssertEqual(ByteRateLimit.defaultBurst(for: 10_000_000), 1_000_000)
        XCTAssertEqual(ByteRateLimit.defaultBurst(for: 1_000), 65_536)
        XCTAssertEqual(ByteRateLimit(bytesPerSecond: 1_000_000, now: t0).burst, 100_000)
    }

    func testSpendingIntoDebtAsksForTheWaitThatPaysItOff() {
        var limit = ByteRateLimit(bytesPerSecond: 1_000_000, burst: 100_000, now: t0)
        XCTAssertEqual(limit.spend(60_000, now: t0), .zero, "within the burst")
        XCTAssertEqual(limit.spend(90_000, now: t0), .milliseconds(50), "50,000 bytes of debt at 1 MB/s")
        XCTAssertEqual(limit.wait(now: t0 + .milliseconds(20)), .milliseconds(30))
        XCTAssertEqual(limit.wait(now: t0 + .milliseconds(50)), .microseconds(1), "paid off exactly: one more microsecond")
        XCTAssertEqual(limit.wait(now: t0 + .milliseconds(51)), .zero)
    }

    func testAStreamThatWaitsAsToldMovesAtTheRate() {
        // 64 KiB reads as fast as allowed for 10 s at 500 kB/s: the burst plus 5 MB, not more.
        var limit = ByteRateLimit(bytesPerSecond: 500_000, now: t0)
        var now = t0
        var moved = 0
        while now < t0 + .seconds(10) {
            let wait = limit.wait(now: now)
            if wait > .zero {
                now = now + wait
                continue
            }
            moved += 65_536
            _ = limit.spend(65_536, now: now)
        }
        XCTAssertEqual(Double(moved), 5_000_000 + 65_536, accuracy: 2 * 65_536)
    }

    func testDatagramsTakeOnlyWhatIsThere() {
        var limit = ByteRateLimit(bytesPerSecond: 10_000, burst: 3_000, now: t0)
        XCTAssertTrue(limit.take(1_500, now: t0))
        XCTAssertTrue(limit.take(1_500, now: t0))
        XCTAssertFalse(limit.take(1, now: t0), "the burst is spent")
        XCTAssertFalse(limit.take(1_500, now: t0 + .milliseconds(100)), "1,000 bytes back after 100 ms")
        XCTAssertTrue(limit.take(1_000, now: t0 + .milliseconds(100)), "a refused datagram took nothing")
    }

    func testSavingsAreCappedAtTheBurst() {
        var limit = ByteRateLimit(bytesPerSecond: 1_000, burst: 70_000, now: t0)
        XCTAssertTrue(limit.take(70_000, now: t0 + .seconds(3600)))
        XCTAssertFalse(limit.take(1_000, now: t0 + .seconds(3600)))
    }

    func testTimeGoingBackwardsGrantsNothing() {
        var limit = ByteRateLimit(bytesPerSecond: 1_000, burst: 65_536, now: t0 + .seconds(10))
        XCTAssertTrue(limit.take(65_536, now: t0 + .seconds(10)))
        XCTAssertFalse(limit.take(1, now: t0))
        XCTAssertGreaterThan(limit.wait(now: t0), .zero)
    }
}
