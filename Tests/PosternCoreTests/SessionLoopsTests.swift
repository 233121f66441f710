import PosternCore
import XCTest

/// The session ids the server hands out name their session's loop, the way the service port's
/// reuseport program reads them: the low 32 bits modulo the number of loops.
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
        // 2^32 is 1 mod 3, but its low 32 bits are 0: the program sees 0.
        XCTAssertEqual(SessionLoops.loop(ofSession: 1 << 32, loops: 3), 0)
        XCTAssertEqual(SessionLoops.loop(ofSession: (1 << 32) + 5, loops: 3), 2)
        let id = SessionLoops.sessionID(atOrAfter: (1 << 32) - 1, loop: 1, loops: 3)
        XCTAssertEqual(SessionLoops.loop(ofSession: id, loops: 3), 1)
        XCTAssertEqual(id, (1 << 32) + 1)
    }

    func testOneLoopOrAForeignLoopTakesTheNextId() {
        XCTAssertEqual(SessionLoops.sessionID(atOrAfter: 41, loop: 0, loops: 1), 41)
        XCTAssertEqual(SessionLoops.loop(ofSession: 41, loops: 1), 0)
        XCTAssertEqual(SessionLoops.sessionID(atOrAfter: 41, loop: 5, loops: 4), 41)
        XCTAssertEqual(SessionLoops.sessionID(atOrAfter: 41, loop: -1, loops: 4), 41)
    }
}
