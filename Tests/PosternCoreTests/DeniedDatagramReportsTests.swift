import NIOCore
import PosternCore
import XCTest

/// The thinning of DENIED (docs/protocol.md §6.5): the first drop at once, the rest of a flood
/// gathered into one report per interval, nothing lost, nothing reported twice.
final class DeniedDatagramReportsTests: XCTestCase {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func testFirstDropGoesAtOnceAndAFloodIsGathered() {
        var r = DeniedDatagramReports(interval: .seconds(1))
        XCTAssertEqual(r.denied(now: t0), .send(1))
        XCTAssertEqual(r.denied(now: t0 + .milliseconds(10)), .flushAt(t0 + .seconds(1)))
        for i in 0..<9_999 { XCTAssertEqual(r.denied(now: t0 + .milliseconds(11 + Int64(i) / 100)), .none) }
        XCTAssertEqual(r.pending, 10_000)
        XCTAssertEqual(r.flush(now: t0 + .seconds(1)), 10_000)
        XCTAssertEqual(r.pending, 0)
        // Right after a flushed report the next drop waits for the interval again.
        XCTAssertEqual(r.denied(now: t0 + .milliseconds(1001)), .flushAt(t0 + .seconds(2)))
        XCTAssertEqual(r.flush(now: t0 + .seconds(2)), 1)
        // Quiet for longer than the interval: at once again.
        XCTAssertEqual(r.denied(now: t0 + .seconds(5)), .send(1))
    }

    func testAFlushWithNothingGatheredSendsNothing() {
        var r = DeniedDatagramReports(interval: .seconds(1))
        XCTAssertNil(r.flush(now: t0))
        XCTAssertEqual(r.denied(now: t0), .send(1))
        XCTAssertNil(r.flush(now: t0 + .seconds(1)))
    }
}
