import NIOCore
import PosternCore
import XCTest

final class TokenBucketTests: XCTestCase {
    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func testABurstPassesThenTheRateGoverns() {
        var bucket = TokenBucket(rate: 10, burst: 5, now: t0)
        XCTAssertEqual((0..<8).filter { _ in bucket.take(now: t0) }.count, 5, "the burst, then nothing at the same instant")
        XCTAssertFalse(bucket.take(now: t0 + .milliseconds(50)), "half a token after 50 ms at 10/s")
        XCTAssertTrue(bucket.take(now: t0 + .milliseconds(100)))
        XCTAssertFalse(bucket.take(now: t0 + .milliseconds(100)))
    }

    func testSavingsAreCappedAtTheBurst() {
        var bucket = TokenBucket(rate: 100, burst: 3, now: t0)
        let later = t0 + .seconds(3600)
        XCTAssertEqual((0..<10).filter { _ in bucket.take(now: later) }.count, 3)
    }

    func testOverOneSecondAtMostRatePlusBurstPass() {
        var bucket = TokenBucket(rate: 1000, burst: 100, now: t0)
        var passed = 0
        for i in 0..<10_000 where bucket.take(now: t0 + .microseconds(Int64(i) * 100)) { passed += 1 }
        // 10,000 attempts over 1 s: the burst plus 1,000 a second.
        XCTAssertEqual(passed, 1100, accuracy: 2)
    }

    func testTimeGoingBackwardsGrantsNothing() {
        var bucket = TokenBucket(rate: 10, burst: 1, now: t0 + .seconds(1))
        XCTAssertTrue(bucket.take(now: t0 + .seconds(1)))
        XCTAssertFalse(bucket.take(now: t0))
        XCTAssertFalse(bucket.take(now: t0 + .seconds(1)))
    }
}
