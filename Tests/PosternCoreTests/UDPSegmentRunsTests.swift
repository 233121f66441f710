import PosternCore
import XCTest

final class UDPSegmentRunsTests: XCTestCase {
    let gso = UDPSegmentRuns(maxSegmentSize: 1_452)

    func testEqualSizesToOneDestinationMakeOneRun() {
        XCTAssertEqual(gso.runs(sizes: Array(repeating: 1_448, count: 10), destinations: Array(repeating: "a", count: 10)), [0..<10])
    }

    func testAShorterDatagramEndsTheRunALongerOneStartsANewOne() {
        let sizes = [1_000, 1_000, 600, 1_000, 1_200, 1_200]
        XCTAssertEqual(gso.runs(sizes: sizes, destinations: Array(repeating: 1, count: 6)), [0..<3, 3..<4, 4..<6])
    }

    func testAnotherDestinationStartsANewRun() {
        XCTAssertEqual(gso.runs(sizes: [100, 100, 100, 100], destinations: ["a", "a", "b", "a"]), [0..<2, 2..<3, 3..<4])
    }

    func testSegmentsLargerThanTheMTUOrEmptyAreAlone() {
        XCTAssertEqual(
            gso.runs(sizes: [8_000, 8_000, 0, 0, 1_453, 1_453], destinations: Array(repeating: 0, count: 6)),
            [0..<1, 1..<2, 2..<3, 3..<4, 4..<5, 5..<6])
        XCTAssertEqual(gso.runs(sizes: [1_400, 0], destinations: [0, 0]), [0..<1, 1..<2], "an empty datagram is never a segment")
    }

    func testRunsStopAtTheSegmentAndPayloadLimits() {
        let many = gso.runs(sizes: Array(repeating: 100, count: 150), destinations: Array(repeating: 0, count: 150))
        XCTAssertEqual(many, [0..<64, 64..<128, 128..<150])
        // 45 x 1,452 = 65,340 fits 65,507; a 46th would not.
        let full = gso.runs(sizes: Array(repeating: 1_452, count: 50), destinations: Array(repeating: 0, count: 50))
        XCTAssertEqual(full, [0..<45, 45..<50])
        XCTAssertEqual(
            UDPSegmentRuns(maxSegmentSize: 1_452, maxSegments: 4).runs(sizes: [9, 9, 9, 9, 9], destinations: [0, 0, 0, 0, 0]),
            [0..<4, 4..<5])
    }

    /// Against a model: every index once, in order; each run one destination, equal sizes but a
    /// shorter last, within the limits.
    func testRandomQueuesKeepEveryDatagramOnceAndInOrder() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let n = Int.random(in: 0..<200, using: &rng)
            let sizes = (0..<n).map { _ in [0, 1, 700, 1_400, 1_452, 1_453, 9_000].randomElement(using: &rng)! }
            let destinations = (0..<n).map { _ in Int.random(in: 0..<3, using: &rng) }
            let runs = gso.runs(sizes: sizes, destinations: destinations)
            XCTAssertEqual(runs.flatMap { Array($0) }, Array(0..<n))
            for run in runs where run.count > 1 {
                let first = sizes[run.lowerBound]
                XCTAssertLessThanOrEqual(run.count, UDPSegmentRuns.kernelMaxSegments)
                XCTAssertLessThanOrEqual(run.map { sizes[$0] }.reduce(0, +), UDPSegmentRuns.maxPayload)
                XCTAssertTrue(first > 0 && first <= 1_452)
                XCTAssertTrue(run.allSatisfy { destinations[$0] == destinations[run.lowerBound] })
                XCTAssertTrue(run.dropLast().allSatisfy { sizes[$0] == first })
                XCTAssertTrue(sizes[run.upperBound - 1] > 0 && sizes[run.upperBound - 1] <= first)
            }
        }
    }
}
