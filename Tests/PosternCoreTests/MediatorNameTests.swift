import PosternCore
import XCTest

final class MediatorNameTests: XCTestCase {
    func testValidNames() {
        for name in ["acme", "a", "A", "0", "lab-1", "site_2.office", String(repeating: "z", count: 64)] {
            XCTAssertTrue(MediatorName.isValid(name), name)
        }
    }

    func testInvalidNames() {
        let invalid = [
            "", String(repeating: "z", count: 65), "a b", "a/b", "a:b", "a@b", "a\tb", "a\nb", "ümlaut", "[acme]",
            "a%2fb", "acme\0",
        ]
        for name in invalid {
            XCTAssertFalse(MediatorName.isValid(name), name)
        }
    }
}
