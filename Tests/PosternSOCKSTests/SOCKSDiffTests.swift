import PosternSOCKS
import XCTest

/// Which SOCKS5 listeners a reload keeps, stops and starts.
final class SOCKSDiffTests: XCTestCase {
    private func spec(_ text: String) throws -> SOCKSListenerSpec { try SOCKSListenerSpec(parsing: text) }

    func testUnchangedAddedRemoved() throws {
        let a = try spec("127.0.0.1:1080=acme")
        let b = try spec("127.0.0.1:1081=acme")
        let c = try spec("0.0.0.0:1082=beta")
        let diff = try SOCKSDiff(running: [a, b], wanted: [a, c])
        XCTAssertEqual(diff.unchanged, [a])
        XCTAssertEqual(diff.removed, [b])
        XCTAssertEqual(diff.added, [c])
        XCTAssertFalse(diff.isEmpty)
    }

    func testSameListenersChangeNothing() throws {
        let listeners = [try spec("127.0.0.1:1080=acme"), try spec("[::1]:1080=beta")]
        let diff = try SOCKSDiff(running: listeners, wanted: listeners.reversed())
        XCTAssertTrue(diff.isEmpty)
        XCTAssertEqual(Set(diff.unchanged), Set(listeners))
    }

    func testAnotherMediatorOnTheSameAddressRestartsTheListener() throws {
        let old = try spec("127.0.0.1:1080=acme")
        let new = try spec("127.0.0.1:1080=beta")
        let diff = try SOCKSDiff(running: [old], wanted: [new])
        XCTAssertEqual(diff.removed, [old])
        XCTAssertEqual(diff.added, [new])
        XCTAssertTrue(diff.unchanged.isEmpty)
    }

    func testTwoListenersOnOneAddressAreRefused() throws {
        let a = try spec("127.0.0.1:1080=acme")
        XCTAssertThrowsError(try SOCKSDiff(running: [], wanted: [a, try spec("127.0.0.1:1080=beta")])) { error in
            XCTAssertTrue("\(error)".contains("same address"), "\(error)")
        }
        XCTAssertThrowsError(try SOCKSDiff(running: [a], wanted: [a, a]))
        // The same port on other addresses is not a collision for the diff (the bind decides).
        XCTAssertNoThrow(try SOCKSDiff(running: [], wanted: [a, try spec("127.0.0.2:1080=acme")]))
    }

    func testEverythingRemoved() throws {
        let a = try spec("127.0.0.1:1080=acme")
        let diff = try SOCKSDiff(running: [a], wanted: [])
        XCTAssertEqual(diff.removed, [a])
        XCTAssertTrue(diff.added.isEmpty)
    }
}
