import Foundation
import XCTest

@testable import PosternTLS

/// The state directory is made with its parents, mode 700; where that cannot be, the refusal is one
/// line naming the directory, the level that failed, the reason and how to choose another (not
/// Foundation's NSError dump, which an unprivileged server without a writable home printed).
final class PrivateDirectoryTests: XCTestCase {
    private var base: String!

    override func setUpWithError() throws {
        base = FileManager.default.temporaryDirectory.appendingPathComponent("postern-dir-\(UUID().uuidString)").path
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: base)
    }

    func testMakesTheDirectoryAndItsParentsPrivateAndAcceptsAnExistingOne() throws {
        let path = base + "/a/b/state"
        try PrivateDirectory.create(path, what: "the state directory", hint: "h")
        try PrivateDirectory.create(path, what: "the state directory", hint: "h")
        for p in [base!, base + "/a", base + "/a/b", path] {
            let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: p)[.posixPermissions] as? Int)
            XCTAssertEqual(mode & 0o777, 0o700, p)
        }
    }

    func testARefusalIsOneLineWithTheReasonAndTheHint() throws {
        try PrivateDirectory.create(base, what: "the state directory", hint: "choose one with --state-dir DIR")
        let file = base + "/file"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data()))
        XCTAssertThrowsError(
            try PrivateDirectory.create(file + "/state", what: "the state directory", hint: "choose one with --state-dir DIR")
        ) {
            XCTAssertEqual(
                "\($0)", "cannot create the state directory \(file)/state: Not a directory; choose one with --state-dir DIR")
        }
        // A level above the last that cannot be made is named.
        XCTAssertThrowsError(try PrivateDirectory.create(file + "/x/state", what: "the state directory", hint: "h")) {
            XCTAssertEqual("\($0)", "cannot create the state directory \(file)/x/state: \(file)/x: Not a directory; h")
        }
        XCTAssertThrowsError(try PrivateDirectory.create(file, what: "the state directory", hint: "choose one with --state-dir DIR")) {
            XCTAssertEqual(
                "\($0)", "cannot create the state directory \(file): it exists and is not a directory; choose one with --state-dir DIR")
        }
    }
}
