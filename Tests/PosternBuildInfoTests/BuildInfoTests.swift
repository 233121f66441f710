import XCTest

@testable import PosternBuildInfo

/// What `--version` and the reported software version say about the build's commit.
final class BuildInfoTests: XCTestCase {
    func testCommitIsAFullHashOrUnknown() throws {
        guard let commit = BuildInfo.commit else {
            XCTAssertFalse(BuildInfo.modified, "no commit, so nothing to be modified against")
            XCTAssertEqual(BuildInfo.versionLine("1.2.3"), "1.2.3 (unknown commit)")
            XCTAssertEqual(BuildInfo.softwareVersion("1.2.3"), "1.2.3")
            return
        }
        XCTAssertEqual(commit.count, 40, commit)
        XCTAssertTrue(commit.allSatisfy { $0.isHexDigit && !$0.isUppercase }, commit)
        let line = BuildInfo.versionLine("1.2.3")
        XCTAssertEqual(line, "1.2.3 (commit \(commit)\(BuildInfo.modified ? ", modified" : ""))")
        XCTAssertEqual(BuildInfo.softwareVersion("1.2.3"), "1.2.3+\(commit.prefix(12))\(BuildInfo.modified ? ".modified" : "")")
    }

    func testTheCommitIsThisCheckoutsWhenBuiltFromOne() throws {
        // The package directory, from this file's path (Tests/PosternBuildInfoTests/…).
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: package.appendingPathComponent(".git").path) else {
            throw XCTSkip("not a git checkout")
        }
        let commit = try XCTUnwrap(BuildInfo.commit, "built from a git checkout, yet no commit recorded")
        // The commit is that of the build; it is in this checkout's history whatever was committed since.
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        git.arguments = ["-C", package.path, "cat-file", "-e", "\(commit)^{commit}"]
        try git.run()
        git.waitUntilExit()
        XCTAssertEqual(git.terminationStatus, 0, "\(commit) is not a commit of \(package.path)")
    }
}
