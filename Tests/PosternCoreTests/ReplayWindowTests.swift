import PosternCore
import XCTest

/// The replay window of docs/protocol.md §9.6.
final class ReplayWindowTests: XCTestCase {
    private let size = ReplayWindow.size

    func testSizeIsThatOfTheDocument() {
        XCTAssertEqual(size, 8128)
    }

    func testInOrder() {
        var w = ReplayWindow()
        XCTAssertNil(w.highest)
        for c in UInt64(0)..<20_000 { XCTAssertEqual(w.accept(c), .fresh(newest: true), "\(c)") }
        XCTAssertEqual(w.highest, 19_999)
        XCTAssertEqual(w.check(19_999), .duplicate)
    }

    func testFirstCounterNeedNotBeZero() {
        var w = ReplayWindow()
        XCTAssertEqual(w.accept(1_000_000), .fresh(newest: true))
        XCTAssertEqual(w.accept(999_999), .fresh(newest: false))
        XCTAssertEqual(w.accept(0), .tooOld)
    }

    func testOutOfOrderWithinTheWindowAndDuplicates() {
        var w = ReplayWindow()
        XCTAssertEqual(w.accept(100), .fresh(newest: true))
        XCTAssertEqual(w.accept(50), .fresh(newest: false))
        XCTAssertEqual(w.accept(50), .duplicate)
        XCTAssertEqual(w.accept(100), .duplicate)
        XCTAssertEqual(w.accept(0), .fresh(newest: false))
        XCTAssertEqual(w.accept(101), .fresh(newest: true))
        XCTAssertEqual(w.accept(99), .fresh(newest: false))
        XCTAssertEqual(w.accept(99), .duplicate)
    }

    func testWindowEdge() {
        var w = ReplayWindow()
        let top = size + 1000
        w.accept(top)
        XCTAssertEqual(w.check(top - size), .tooOld, "exactly `size` below the highest")
        XCTAssertEqual(w.check(top - size + 1), .fresh(newest: false), "the oldest counter still inside")
        XCTAssertEqual(w.accept(top - size + 1), .fresh(newest: false))
        XCTAssertEqual(w.check(top - size + 1), .duplicate)
    }

    /// A jump far ahead slides the window: what it passed is too old, what lies inside the new window
    /// is fresh even where the ring held bits of old counters in the same slots.
    func testFarAheadSlidesAndForgets() {
        var w = ReplayWindow()
        for c in UInt64(0)..<200 { w.accept(c) }
        let ring = UInt64(ReplayWindow.blocks * 64)
        // Same ring slots as 0..<200, one full turn later: those bits must have been cleared.
        XCTAssertEqual(w.accept(ring + 199), .fresh(newest: true))
        for c in (ring)..<(ring + 199) { XCTAssertEqual(w.check(c), .fresh(newest: false), "\(c)") }
        for c in UInt64(0)..<200 { XCTAssertEqual(w.check(c), .tooOld, "\(c)") }
        XCTAssertEqual(w.accept(UInt64(1) << 40), .fresh(newest: true))
        XCTAssertEqual(w.check(ring + 199), .tooOld)
        XCTAssertEqual(w.check((UInt64(1) << 40) - 1), .fresh(newest: false))
    }

    func testTheTopValueIsRefused() {
        var w = ReplayWindow()
        XCTAssertEqual(w.accept(.max), .outOfRange)
        XCTAssertNil(w.highest, "a refused counter changes nothing")
        XCTAssertEqual(w.accept(.max - 1), .fresh(newest: true))
        XCTAssertEqual(w.accept(.max), .outOfRange)
        XCTAssertEqual(w.accept(.max - 1), .duplicate)
        XCTAssertEqual(w.accept(.max - 2), .fresh(newest: false))
        XCTAssertEqual(w.accept(.max - 1 - size), .tooOld)
    }

    func testCheckChangesNothing() {
        var w = ReplayWindow()
        w.accept(10)
        let before = w
        _ = w.check(11)
        _ = w.check(5)
        XCTAssertEqual(w, before)
        XCTAssertEqual(w.accept(5), .fresh(newest: false))
    }

    /// 200,000 random counters (small steps, reordering, big jumps, replays) against a plain model: the
    /// set of every counter accepted.
    func testAgreesWithAModel() {
        var rng = SeededGenerator(seed: 6479)
        var w = ReplayWindow()
        var seen = Set<UInt64>()
        var highest: UInt64?
        var base: UInt64 = 0
        for i in 0..<200_000 {
            let c: UInt64
            switch UInt8.random(in: 0..<10, using: &rng) {
            case 0: c = base &+ UInt64.random(in: 0...20_000, using: &rng)
            case 1: c = base > 9000 ? base - UInt64.random(in: 0...9000, using: &rng) : 0
            case 2: c = seen.randomElement(using: &rng) ?? 0
            case 3 where i % 5000 == 3: c = UInt64.random(in: 0...(UInt64(1) << 62), using: &rng)
            default: c = base &+ UInt64.random(in: 0...70, using: &rng)
            }
            let expected: ReplayWindow.Verdict
            if c == .max {
                expected = .outOfRange
            } else if highest == nil || c > highest! {
                expected = .fresh(newest: true)
            } else if highest! - c >= size {
                expected = .tooOld
            } else if seen.contains(c) {
                expected = .duplicate
            } else {
                expected = .fresh(newest: false)
            }
            XCTAssertEqual(w.accept(c), expected, "input \(i): \(c), highest \(String(describing: highest))")
            if case .fresh = expected {
                seen.insert(c)
                highest = max(highest ?? 0, c)
                base = max(base, c)
            }
            if seen.count > 50_000 { seen = seen.filter { highest! - $0 < size } }
        }
    }
}
