import PosternCore
import XCTest

/// The two halves of a relayed TCP connection (docs/protocol.md §6.4).
final class StreamStateTests: XCTestCase {
    typealias E = StreamState.Event

    private func run(_ events: [E]) -> (StreamState, [StreamState.Outcome]) {
        var s = StreamState()
        let outcomes = events.map { s.apply($0) }
        return (s, outcomes)
    }

    func testStartsOpen() {
        let s = StreamState()
        XCTAssertFalse(s.sentFin)
        XCTAssertFalse(s.receivedFin)
        XCTAssertFalse(s.isReset)
        XCTAssertFalse(s.isClosed)
    }

    func testLocalEOFThenRemoteFin() {
        var s = StreamState()
        XCTAssertEqual(s.apply(.localEOF), .halfClosed)
        XCTAssertTrue(s.sentFin)
        XCTAssertFalse(s.receivedFin)
        XCTAssertFalse(s.isClosed, "the other direction goes on")
        XCTAssertEqual(s.apply(.remoteFin), .closed)
        XCTAssertTrue(s.receivedFin)
        XCTAssertTrue(s.isClosed)
        XCTAssertFalse(s.isReset)
    }

    func testRemoteFinThenLocalEOF() {
        var s = StreamState()
        XCTAssertEqual(s.apply(.remoteFin), .halfClosed)
        XCTAssertTrue(s.receivedFin)
        XCTAssertFalse(s.sentFin)
        XCTAssertFalse(s.isClosed)
        XCTAssertEqual(s.apply(.localEOF), .closed)
        XCTAssertTrue(s.isClosed)
    }

    func testResetClosesAtAnyPoint() {
        for prefix: [E] in [[], [.localEOF], [.remoteFin]] {
            var (s, _) = run(prefix)
            XCTAssertEqual(s.apply(.reset), .closed, "\(prefix)")
            XCTAssertTrue(s.isReset, "\(prefix)")
            XCTAssertTrue(s.isClosed, "\(prefix)")
        }
    }

    func testDuplicatesAreReported() {
        XCTAssertEqual(run([.localEOF, .localEOF]).1, [.halfClosed, .duplicate])
        XCTAssertEqual(run([.remoteFin, .remoteFin]).1, [.halfClosed, .duplicate])
        XCTAssertEqual(run([.reset, .reset]).1, [.closed, .duplicate])
        // A duplicate changes nothing: the other half can still close.
        XCTAssertEqual(run([.localEOF, .localEOF, .remoteFin]).1, [.halfClosed, .duplicate, .closed])
        XCTAssertEqual(run([.remoteFin, .remoteFin, .localEOF]).1, [.halfClosed, .duplicate, .closed])
    }

    func testEverythingAfterCloseIsDuplicate() {
        let closings: [[E]] = [[.localEOF, .remoteFin], [.remoteFin, .localEOF], [.reset], [.localEOF, .reset]]
        for closing in closings {
            for event: E in [.localEOF, .remoteFin, .reset] {
                var (s, _) = run(closing)
                let before = s
                XCTAssertEqual(s.apply(event), .duplicate, "\(closing) then \(event)")
                XCTAssertEqual(s, before, "\(closing) then \(event) changed the state")
            }
        }
    }

    func testEveryOrderOfUpToFourEventsMatchesTheRules() {
        let all: [E] = [.localEOF, .remoteFin, .reset]
        var sequences: [[E]] = [[]]
        var checked = 0
        for _ in 1...4 {
            sequences = sequences.flatMap { seq in all.map { seq + [$0] } }
            for seq in sequences {
                var s = StreamState()
                var sent = false
                var received = false
                var reset = false
                for (i, event) in seq.enumerated() {
                    // The rules, stated independently of the implementation.
                    let expected: StreamState.Outcome
                    if reset || (sent && received) {
                        expected = .duplicate
                    } else {
                        switch event {
                        case .reset:
                            reset = true
                            expected = .closed
                        case .localEOF where sent, .remoteFin where received:
                            expected = .duplicate
                        case .localEOF:
                            sent = true
                            expected = received ? .closed : .halfClosed
                        case .remoteFin:
                            received = true
                            expected = sent ? .closed : .halfClosed
                        }
                    }
                    XCTAssertEqual(s.apply(event), expected, "\(seq) at \(i)")
                    XCTAssertEqual(s.isClosed, reset || (sent && received), "\(seq) at \(i)")
                    XCTAssertEqual(s.sentFin, sent, "\(seq) at \(i)")
                    XCTAssertEqual(s.receivedFin, received, "\(seq) at \(i)")
                    XCTAssertEqual(s.isReset, reset, "\(seq) at \(i)")
                }
                checked += 1
            }
        }
        XCTAssertEqual(checked, 3 + 9 + 27 + 81)
    }

    func testClosedIsReportedExactlyOnceInAnyOrder() {
        let all: [E] = [.localEOF, .remoteFin, .reset]
        for a in all {
            for b in all {
                for c in all {
                    let outcomes = run([a, b, c]).1
                    XCTAssertLessThanOrEqual(outcomes.filter { $0 == .closed }.count, 1, "\([a, b, c])")
                    XCTAssertFalse(outcomes.contains(.none), "\([a, b, c])")
                }
            }
        }
    }
}
