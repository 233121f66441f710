import NIOCore
import PosternCore
import XCTest

/// Failed proofs per address: a burst closes the address until its bucket is full again.
final class FailedProofThrottleTests: XCTestCase {
    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func testFiveFailuresCloseTheAddressAndTheFifthSaysSoOnce() {
        var throttle = FailedProofThrottle()
        for remaining in (1...4).reversed() {
            XCTAssertTrue(throttle.admits("198.51.100.7", now: t0))
            XCTAssertEqual(throttle.failedProof(from: "198.51.100.7", now: t0), .counted(remaining: remaining))
        }
        XCTAssertEqual(throttle.failedProof(from: "198.51.100.7", now: t0), .closed(closedFor: .seconds(10)))
        XCTAssertTrue(throttle.isClosed("198.51.100.7"))
        XCTAssertFalse(throttle.admits("198.51.100.7", now: t0))
        XCTAssertFalse(throttle.admits("198.51.100.7", now: t0 + .seconds(5)))
        // A proof that was already under way fails too: counted, not announced again.
        XCTAssertEqual(throttle.failedProof(from: "198.51.100.7", now: t0 + .seconds(5)), .alreadyClosed)
        XCTAssertEqual(throttle.refusedConnections, 2)
    }

    func testOtherAddressesAreNotAffected() {
        var throttle = FailedProofThrottle()
        for _ in 0..<5 { _ = throttle.failedProof(from: "198.51.100.7", now: t0) }
        XCTAssertFalse(throttle.admits("198.51.100.7", now: t0))
        XCTAssertTrue(throttle.admits("203.0.113.20", now: t0))
        XCTAssertTrue(throttle.admits("2001:db8::7", now: t0))
    }

    func testTheAddressOpensWhenTheBucketIsFullAgainNotBefore() {
        var throttle = FailedProofThrottle()
        for _ in 0..<5 { _ = throttle.failedProof(from: "a", now: t0) }
        XCTAssertFalse(throttle.admits("a", now: t0 + .seconds(10) - .milliseconds(1)))
        XCTAssertTrue(throttle.admits("a", now: t0 + .seconds(10)))
        XCTAssertFalse(throttle.isClosed("a"))
        XCTAssertEqual(throttle.count, 0, "a full bucket is forgotten")
        // A new burst is announced again.
        for _ in 0..<4 { _ = throttle.failedProof(from: "a", now: t0 + .seconds(10)) }
        XCTAssertEqual(throttle.failedProof(from: "a", now: t0 + .seconds(10)), .closed(closedFor: .seconds(10)))
    }

    func testFailuresSpreadOutNeverClose() {
        // One failure every 2 s refills as fast as it drains: a slow retrier is never shut out.
        var throttle = FailedProofThrottle()
        for i in 0..<50 {
            let now = t0 + .seconds(Int64(2 * i))
            XCTAssertTrue(throttle.admits("a", now: now), "attempt \(i)")
            XCTAssertEqual(throttle.failedProof(from: "a", now: now), .counted(remaining: 4), "attempt \(i)")
        }
        // One every second drains it: closed after a few.
        var closedAt: Int?
        for i in 0..<20 where closedAt == nil {
            if case .closed = throttle.failedProof(from: "b", now: t0 + .seconds(Int64(i))) { closedAt = i }
        }
        XCTAssertEqual(closedAt, 7, "4 - 0.5 × i tokens left after the i-th: under 1 at the 7th")
    }

    func testClosedForIsTheTimeToAFullBucket() {
        var throttle = FailedProofThrottle(burst: 2, window: .seconds(4))
        XCTAssertEqual(throttle.failedProof(from: "a", now: t0), .counted(remaining: 1))
        // 1 s later half a token came back: 1.5 - 1 = 0.5 left, 1.5 tokens to go at 0.5 a second.
        XCTAssertEqual(throttle.failedProof(from: "a", now: t0 + .seconds(1)), .closed(closedFor: .seconds(3)))
        XCTAssertFalse(throttle.admits("a", now: t0 + .seconds(4) - .milliseconds(1)))
        XCTAssertTrue(throttle.admits("a", now: t0 + .seconds(4)))
    }

    func testTheTableIsBoundedAndForgetsOpenAddressesBeforeClosedOnes() {
        var throttle = FailedProofThrottle(burst: 2, window: .seconds(100), maxAddresses: 3)
        _ = throttle.failedProof(from: "closed", now: t0)
        _ = throttle.failedProof(from: "closed", now: t0)
        XCTAssertTrue(throttle.isClosed("closed"))
        _ = throttle.failedProof(from: "old", now: t0 + .seconds(1))
        _ = throttle.failedProof(from: "young", now: t0 + .seconds(2))
        XCTAssertEqual(throttle.count, 3)
        // A fourth address: the least recently seen open one goes, the closed one stays.
        _ = throttle.failedProof(from: "new", now: t0 + .seconds(3))
        XCTAssertEqual(throttle.count, 3)
        XCTAssertFalse(throttle.admits("closed", now: t0 + .seconds(3)))
        guard case .closed = throttle.failedProof(from: "young", now: t0 + .seconds(3)) else {
            return XCTFail("young kept its bucket: its second failure closes it")
        }
        XCTAssertEqual(
            throttle.failedProof(from: "old", now: t0 + .seconds(3)), .counted(remaining: 1), "old was forgotten: a fresh bucket")
        // Many addresses never grow it past the bound.
        for i in 0..<1000 { _ = throttle.failedProof(from: "flood-\(i)", now: t0 + .seconds(4)) }
        XCTAssertEqual(throttle.count, 3)
    }

    func testWhenEveryAddressIsClosedTheOldestClosedOneGoes() {
        var throttle = FailedProofThrottle(burst: 1, window: .seconds(100), maxAddresses: 2)
        XCTAssertEqual(throttle.failedProof(from: "a", now: t0), .closed(closedFor: .seconds(100)))
        XCTAssertEqual(throttle.failedProof(from: "b", now: t0 + .seconds(1)), .closed(closedFor: .seconds(100)))
        _ = throttle.failedProof(from: "c", now: t0 + .seconds(2))
        XCTAssertEqual(throttle.count, 2)
        XCTAssertTrue(throttle.admits("a", now: t0 + .seconds(2)), "a was the oldest")
        XCTAssertFalse(throttle.admits("b", now: t0 + .seconds(2)))
    }

    func testAnUnknownAddressCostsNothing() {
        var throttle = FailedProofThrottle()
        for i in 0..<100 { XCTAssertTrue(throttle.admits("198.51.100.\(i)", now: t0)) }
        XCTAssertEqual(throttle.count, 0)
    }
}
