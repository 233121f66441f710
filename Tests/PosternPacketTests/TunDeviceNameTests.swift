import PosternPacket
import XCTest

final class TunDeviceNameTests: XCTestCase {
    func testShortPlainNamesAreKept() {
        XCTAssertEqual(TunDeviceName.make(prefix: TunDeviceName.serverPrefix, mediator: "acme"), "pts-acme")
        XCTAssertEqual(TunDeviceName.make(prefix: TunDeviceName.mediatorPrefix, mediator: "branch-2_b"), "ptm-branch-2_b")
        XCTAssertEqual(TunDeviceName.make(prefix: "pts-", mediator: "abcdefghijk"), "pts-abcdefghijk")
    }

    /// Too long for IFNAMSIZ, or characters an interface name should not hold: a stable hash.
    func testOtherNamesAreHashedStably() {
        for name in ["abcdefghijkl", "Acme", "a.b", "x"] {
            let a = TunDeviceName.make(prefix: "pts-", mediator: name)
            XCTAssertLessThanOrEqual(a.utf8.count, 15, name)
            XCTAssertEqual(a, TunDeviceName.make(prefix: "pts-", mediator: name), "the same on every run")
        }
        XCTAssertEqual(TunDeviceName.make(prefix: "pts-", mediator: "x"), "pts-x")
        let hashed = TunDeviceName.make(prefix: "pts-", mediator: "Acme")
        XCTAssertTrue(hashed.hasPrefix("pts-") && hashed.count == 12, hashed)
        XCTAssertNotEqual(hashed, TunDeviceName.make(prefix: "pts-", mediator: "ACME"))
        // FNV-1a (32-bit) of "A" is c40bf6cc, of "a.b" 108bf50c (computed independently in Python).
        XCTAssertEqual(TunDeviceName.make(prefix: "pts-", mediator: "A"), "pts-c40bf6cc")
        XCTAssertEqual(TunDeviceName.make(prefix: "pts-", mediator: "a.b"), "pts-108bf50c")
    }
}
