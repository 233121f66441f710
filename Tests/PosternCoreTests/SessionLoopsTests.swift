import PosternCore
import XCTest

/// The session ids the server hands out name their session's loop, the way the service port's
/// reuseport program reads them: the low 32 bits less one (wrapping) modulo the number of loops.
final class SessionLoopsTests: XCTestCase {
    func testIdsNameTheirLoopAndStayUniqueAndIncreasing() {
        var next: UInt64 = 1
        var seen: Set<UInt64> = []
        for i in 0..<1000 {
            let loop = (i * 7) % 3
            let id = SessionLoops.sessionID(atOrAfter: next, loop: loop, loops: 3)
            XCTAssertGreaterThanOrEqual(id, next)
            XCTAssertLessThan(id, next + 3, "at most one id per loop is skipped")
            XCTAssertEqual(SessionLoops.loop(ofSession: id, loops: 3), loop)
            XCTAssertTrue(seen.insert(id).inserted)
            next = id + 1
        }
    }

    func testTheKernelsArithmeticOnTheLow32Bits() {
        // 2^32's low 32 bits are 0; less one wraps to 2^32 − 1, which is 0 mod 3 (and 1 mod 2).
        XCTAssertEqual(SessionLoops.loop(ofSession: 1 << 32, loops: 3), 0)
        XCTAssertEqual(SessionLoops.loop(ofSession: 1 << 32, loops: 2), 1)
        XCTAssertEqual(SessionLoops.loop(ofSession: (1 << 32) + 5, loops: 3), 1)
        let id = SessionLoops.sessionID(atOrAfter: (1 << 32) - 1, loop: 1, loops: 3)
        XCTAssertEqual(SessionLoops.loop(ofSession: id, loops: 3), 1)
        XCTAssertEqual(id, (1 << 32) + 2)
    }

    func testRoundRobinFromLoopZeroKeepsTheIdsOfOneLoop() {
        var next: UInt64 = 1
        for i in 0..<12 {
            let id = SessionLoops.sessionID(atOrAfter: next, loop: i % 2, loops: 2)
            XCTAssertEqual(id, UInt64(i + 1))
            next = id + 1
        }
    }

    func testOneLoopOrAForeignLoopTakesTheNextId() {
        XCTAssertEqual(SessionLoops.sessionID(atOrAfter: 41, loop: 0, loops: 1), 41)
        XCTAssertEqual(SessionLoops.loop(ofSession: 41, loops: 1), 0)
        XCTAssertEqual(SessionLoops.sessionID(atOrAfter: 41, loop: 5, loops: 4), 41)
        XCTAssertEqual(SessionLoops.sessionID(atOrAfter: 41, loop: -1, loops: 4), 41)
    }
}
