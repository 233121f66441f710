import NIOCore
import PosternCore
import XCTest

/// Reconnect delays (DESIGN.md: "fast first retries, then capped, jittered exponential backoff").
final class BackoffTests: XCTestCase {
    private let ms: Int64 = 1_000_000

    func testDefaults() {
        let b = Backoff()
        XCTAssertEqual(b.fastRetries, 3)
        XCTAssertEqual(b.fastDelay, .milliseconds(200))
        XCTAssertEqual(b.base, .milliseconds(500))
        XCTAssertEqual(b.cap, .seconds(30))
        XCTAssertEqual(b.attempt, 0)
    }

    func testFirstRetriesAreFastWhateverTheRandomNumber() {
        var b = Backoff()
        XCTAssertEqual(b.nextDelay(unit: 0), .milliseconds(200))
        XCTAssertEqual(b.nextDelay(unit: 0.5), .milliseconds(200))
        XCTAssertEqual(b.nextDelay(unit: 0.999), .milliseconds(200))
        XCTAssertEqual(b.attempt, 3)
        XCTAssertNotEqual(b.nextDelay(unit: 0), .milliseconds(200))
    }

    func testThenGrowsExponentiallyUpToTheCap() {
        var b = Backoff()
        for _ in 0..<3 { _ = b.nextDelay(unit: 0) }
        // unit 0 gives the lower bound, half the ceiling: 500 ms, 1 s, 2 s, ... capped at 30 s.
        let lower = (0..<10).map { _ in b.nextDelay(unit: 0).nanoseconds / ms }
        XCTAssertEqual(lower, [250, 500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000, 15_000])
    }

    func testEqualJitterStaysBetweenHalfTheCeilingAndTheCeiling() {
        for unit in [0, 0.25, 0.5, 0.75, 0.999_999] {
            var b = Backoff()
            for _ in 0..<3 { _ = b.nextDelay(unit: unit) }
            for step in 0..<12 {
                let ceiling = min(500 * ms << step, 30_000 * ms)
                let d = b.nextDelay(unit: unit).nanoseconds
                XCTAssertGreaterThanOrEqual(d, ceiling / 2, "unit \(unit) step \(step)")
                XCTAssertLessThanOrEqual(d, ceiling, "unit \(unit) step \(step)")
                XCTAssertEqual(Double(d), Double(ceiling) / 2 * (1 + unit), accuracy: 2, "unit \(unit) step \(step)")
            }
        }
    }

    func testRandomNumbersOutsideTheUnitIntervalAreClamped() {
        var high = Backoff()
        high.fastRetries = 0
        XCTAssertEqual(high.nextDelay(unit: 7), .milliseconds(500))
        var low = Backoff()
        low.fastRetries = 0
        XCTAssertEqual(low.nextDelay(unit: -3), .milliseconds(250))
    }

    func testNeverExceedsTheCapEvenAfterManyAttempts() {
        var rng = SeededGenerator(seed: 42)
        var b = Backoff()
        for attempt in 0..<500 {
            let d = b.nextDelay(unit: Double.random(in: 0..<1, using: &rng))
            XCTAssertLessThanOrEqual(d, b.cap, "attempt \(attempt)")
            XCTAssertGreaterThan(d.nanoseconds, 0, "attempt \(attempt)")
            if attempt >= 10 {
                XCTAssertGreaterThanOrEqual(d.nanoseconds, b.cap.nanoseconds / 2, "attempt \(attempt): stays near the cap")
            }
        }
        XCTAssertEqual(b.attempt, 500)
    }

    func testResetRestartsTheFastRetries() {
        var b = Backoff()
        for _ in 0..<8 { _ = b.nextDelay(unit: 0.5) }
        b.reset()
        XCTAssertEqual(b.attempt, 0)
        XCTAssertEqual((0..<3).map { _ in b.nextDelay(unit: 0.9) }, Array(repeating: .milliseconds(200), count: 3))
        XCTAssertEqual(b.nextDelay(unit: 0), .milliseconds(250), "and the exponential part starts over")
    }

    func testCustomSchedule() {
        var b = Backoff()
        b.fastRetries = 1
        b.fastDelay = .milliseconds(50)
        b.base = .seconds(1)
        b.cap = .seconds(5)
        let delays = (0..<6).map { _ in b.nextDelay(unit: 0.999_999_999).nanoseconds / ms }
        XCTAssertEqual(delays, [50, 999, 1999, 3999, 4999, 4999])
    }
}
