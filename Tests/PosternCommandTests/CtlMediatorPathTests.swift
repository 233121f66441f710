import XCTest

@testable import postern

/// `ctl ports NAME` (and open, connect, ping...) put NAME into the admin API's URL: only a name a
/// mediator may have gets there. `acme?x=1` answered with acme's ports, an empty name asked about a
/// mediator called "ports", and `a b` broke the HTTP request line.
final class CtlMediatorPathTests: XCTestCase {
    func testAMediatorNameIsItsPath() throws {
        XCTAssertEqual(try CtlCommand.mediatorPath("acme"), "/v1/mediators/acme")
        XCTAssertEqual(try CtlCommand.mediatorPath("lab-2_b.x"), "/v1/mediators/lab-2_b.x")
    }

    func testAnythingElseIsRefusedBeforeARequestIsMade() {
        for bad in ["", "a b", "acme?x=1", "acme/ports", "acme#", "%61cme", String(repeating: "a", count: 65), "a\r\nHost: x"] {
            XCTAssertThrowsError(try CtlCommand.mediatorPath(bad), "'\(bad)'") { error in
                XCTAssertTrue("\(error)".contains("is not a mediator name"), "\(error)")
            }
        }
    }
}
