import PosternCore
import XCTest

/// A live mediator keeps its name; a dead one is replaced once it fails to answer (docs/security.md).
final class NameClaimsTests: XCTestCase {
    typealias Claims = NameClaims<Int>

    func testAFreeNameIsAdmittedAtOnce() {
        var c = Claims()
        XCTAssertEqual(c.claim("acme", by: 1), [.admit(1)])
        XCTAssertEqual(c.claim("beta", by: 2), [.admit(2)])
        XCTAssertEqual(c.holders, ["acme": 1, "beta": 2])
    }

    func testAClaimOnAHeldNameProbesTheHolderAndAnAnswerRefusesTheNewcomer() {
        var c = Claims()
        _ = c.claim("acme", by: 1)
        XCTAssertEqual(c.claim("acme", by: 2), [.probe(holder: 1)])
        XCTAssertEqual(c.waiting, ["acme": 2])
        XCTAssertEqual(c.answered("acme", by: 1), [.refuse(2, holder: 1)])
        XCTAssertEqual(c.holders, ["acme": 1], "the live holder keeps the name")
        XCTAssertEqual(c.waiting, [:])
        XCTAssertEqual(c.ended("acme", 2), [], "the refused session's end changes nothing")
        XCTAssertEqual(c.holders, ["acme": 1])
    }

    func testASilentHolderIsReplacedByTheWaitingNewcomerWhenItsSessionEnds() {
        var c = Claims()
        _ = c.claim("acme", by: 1)
        _ = c.claim("acme", by: 2)
        XCTAssertEqual(c.ended("acme", 1), [.admit(2)])
        XCTAssertEqual(c.holders, ["acme": 2])
        XCTAssertEqual(c.answered("acme", by: 1), [], "a late answer from the ended holder is ignored")
    }

    func testOneNewcomerAtATime() {
        var c = Claims()
        _ = c.claim("acme", by: 1)
        _ = c.claim("acme", by: 2)
        XCTAssertEqual(c.claim("acme", by: 3), [.refuse(3, holder: 1)])
        XCTAssertEqual(c.waiting, ["acme": 2])
    }

    func testANewcomerThatLeavesWhileWaitingIsForgotten() {
        var c = Claims()
        _ = c.claim("acme", by: 1)
        _ = c.claim("acme", by: 2)
        XCTAssertEqual(c.ended("acme", 2), [])
        XCTAssertEqual(c.answered("acme", by: 1), [], "nobody left to refuse")
        XCTAssertEqual(c.ended("acme", 1), [], "nobody to admit")
        XCTAssertEqual(c.holders, [:])
        XCTAssertEqual(c.claim("acme", by: 4), [.admit(4)])
    }

    func testAnswersFromOtherSessionsOrNamesChangeNothing() {
        var c = Claims()
        _ = c.claim("acme", by: 1)
        _ = c.claim("acme", by: 2)
        XCTAssertEqual(c.answered("acme", by: 2), [], "the newcomer cannot answer for the holder")
        XCTAssertEqual(c.answered("beta", by: 1), [])
        XCTAssertEqual(c.waiting, ["acme": 2])
        XCTAssertEqual(c.ended("beta", 1), [])
        XCTAssertEqual(c.holders, ["acme": 1])
    }
}
