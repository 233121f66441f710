import Foundation
import Logging
import XCTest

@testable import postern

/// A secret file that cannot be read is refused with the reason, in one line, before anything about
/// its mode: `--secret-file /etc/postern` (a directory) said only "cannot read secret file", after a
/// warning that the directory was readable by others.
final class SecretSourceTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("postern-secret-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func refusal(_ path: String) -> String {
        do {
            _ = try SecretSource.read(path, logger: Logger(label: "test"))
            return "read"
        } catch {
            return "\(error)"
        }
    }

    func testADirectoryIsRefusedAsADirectory() {
        XCTAssertEqual(refusal(directory.path), "cannot read secret file \(directory.path): it is a directory")
    }

    func testAMissingFileAndAFIFOSayWhy() throws {
        let missing = directory.appendingPathComponent("none").path
        XCTAssertEqual(refusal(missing), "cannot read secret file \(missing): No such file or directory")
        let fifo = directory.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertEqual(refusal(fifo), "cannot read secret file \(fifo): it is not a regular file")
    }

    func testNotUTF8IsRefusedAndAGoodFileIsRead() throws {
        let bad = directory.appendingPathComponent("bad")
        XCTAssertTrue(
            FileManager.default.createFile(atPath: bad.path, contents: Data([0xff, 0xfe, 0x0a]), attributes: [.posixPermissions: 0o600]))
        XCTAssertEqual(refusal(bad.path), "secret file \(bad.path) is not UTF-8 text")
        let good = directory.appendingPathComponent("good")
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: good.path, contents: Data("a secret of enough bytes\n".utf8), attributes: [.posixPermissions: 0o600]))
        XCTAssertEqual(try SecretSource.read(good.path, logger: Logger(label: "test")), "a secret of enough bytes\n")
    }
}
