import PosternCore
import XCTest

/// Which unauthenticated connection the server drops when there are too many (issue 8, item 8): a
/// flood of new connections must not push out a mediator that is further along.
final class UnauthenticatedConnectionsTests: XCTestCase {
    typealias T = UnauthenticatedConnections

    func testRoomAdmitsWithoutEvicting() {
        var t = T(maxTotal: 4, maxPerSource: 2)
        var rng = SeededGenerator(seed: 1)
        XCTAssertEqual(t.admit(1, from: "a", using: &rng), .admitted(evicting: []))
        XCTAssertEqual(t.admit(2, from: "a", using: &rng), .admitted(evicting: []))
        XCTAssertEqual(t.admit(3, from: "b", using: &rng), .admitted(evicting: []))
        XCTAssertEqual(t.count, 3)
        XCTAssertEqual(t.count(from: "a"), 2)
        t.remove(1)
        t.remove(1)
        XCTAssertEqual(t.count(from: "a"), 1, "removing twice is harmless")
    }

    func testOneSourceOnlyEvictsItsOwnConnections() {
        var t = T(maxTotal: 256, maxPerSource: 16)
        var rng = SeededGenerator(seed: 2)
        // A real mediator from another address, still in its TLS handshake.
        XCTAssertEqual(t.admit(0, from: "mediator", using: &rng), .admitted(evicting: []))
        for id in UInt64(1)...2000 {
            guard case .admitted(let evicted) = t.admit(id, from: "flood", using: &rng) else {
                return XCTFail("a newcomer is admitted while the source has ones short of HELLO")
            }
            XCTAssertLessThanOrEqual(evicted.count, 1)
            XCTAssertFalse(evicted.contains(0), "the flood evicted the mediator at connection \(id)")
        }
        XCTAssertEqual(t.count(from: "flood"), 16)
        XCTAssertEqual(t.stage(of: 0), .connected, "still there after 2,000 flood connections")
    }

    func testFurtherStagesAreProtectedAndTheLeastAdvancedGoFirst() {
        var t = T(maxTotal: 4, maxPerSource: 100)
        var rng = SeededGenerator(seed: 3)
        for id in UInt64(1)...4 { _ = t.admit(id, from: "s\(id)", using: &rng) }
        t.advance(1, to: .helloReceived)
        t.advance(2, to: .transportReady)
        t.advance(3, to: .transportReady)
        // 4 is the only one still in TLS: it goes first.
        XCTAssertEqual(t.admit(5, from: "x", using: &rng), .admitted(evicting: [4]))
        // Then one of those waiting for HELLO; 5 (in TLS) is the least advanced now.
        XCTAssertEqual(t.admit(6, from: "y", using: &rng), .admitted(evicting: [5]))
        t.advance(6, to: .helloReceived)
        guard case .admitted(let e) = t.admit(7, from: "z", using: &rng), let victim = e.first else {
            return XCTFail("no room made")
        }
        XCTAssertTrue([2, 3].contains(victim), "a connection waiting for HELLO, never one past it: \(victim)")
        t.advance(2, to: .helloReceived)
        t.advance(3, to: .helloReceived)
        t.advance(7, to: .helloReceived)
        XCTAssertEqual(t.stage(of: 1), .helloReceived)
        XCTAssertEqual(t.admit(8, from: "w", using: &rng), .refused(.tableFull(4)), "all past HELLO: the newcomer is refused")
        XCTAssertEqual(t.count, 4)
        t.advance(1, to: .connected)
        XCTAssertEqual(t.stage(of: 1), .helloReceived, "a stage never goes back")
    }

    func testASourceWhoseConnectionsAllSentHelloIsRefused() {
        var t = T(maxTotal: 100, maxPerSource: 2)
        var rng = SeededGenerator(seed: 4)
        _ = t.admit(1, from: "a", using: &rng)
        _ = t.admit(2, from: "a", using: &rng)
        t.advance(1, to: .helloReceived)
        t.advance(2, to: .helloReceived)
        XCTAssertEqual(t.admit(3, from: "a", using: &rng), .refused(.sourceFull(2)))
        XCTAssertEqual(t.admit(4, from: "b", using: &rng), .admitted(evicting: []), "other sources are not affected")
    }

    func testTheVictimIsRandomAndTheSeedRepeatsIt() {
        func victims(seed: UInt64) -> [UInt64] {
            var t = T(maxTotal: 50, maxPerSource: 1000)
            var rng = SeededGenerator(seed: seed)
            var out: [UInt64] = []
            for id in UInt64(1)...200 {
                if case .admitted(let e) = t.admit(id, from: "s", using: &rng) { out += e }
            }
            return out
        }
        let a = victims(seed: 7)
        XCTAssertEqual(a.count, 150)
        XCTAssertEqual(a, victims(seed: 7), "a seeded generator replays the choice")
        XCTAssertNotEqual(a, victims(seed: 8))
        XCTAssertNotEqual(a, Array(1...150), "not the oldest first: a flood cannot predict whom it evicts")
    }

    /// Several flooding sources fill the table with connections that never finish TLS; a real mediator
    /// that needs 40 more accepts to finish its TLS handshake survives nearly always, and once past
    /// TLS it is never evicted by them.
    func testAMultiSourceFloodRarelyHitsAMediatorInItsHandshake() {
        var survived = 0
        for seed in UInt64(0)..<40 {
            var t = T(maxTotal: 256, maxPerSource: 16)
            var rng = SeededGenerator(seed: seed)
            var id: UInt64 = 1
            func flood(_ n: Int) {
                for _ in 0..<n {
                    _ = t.admit(id, from: "flood\(id % 64)", using: &rng)
                    id += 1
                }
            }
            flood(300)
            _ = t.admit(0, from: "mediator", using: &rng)
            flood(40)
            guard t.stage(of: 0) != nil else { continue }
            t.advance(0, to: .transportReady)
            flood(1000)
            XCTAssertEqual(t.stage(of: 0), .transportReady, "past TLS, the mediator is never the one evicted")
            survived += 1
        }
        XCTAssertGreaterThan(survived, 30, "survived \(survived) of 40")
    }
}
