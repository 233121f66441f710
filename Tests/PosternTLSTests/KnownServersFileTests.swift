import Foundation
import PosternCore
import PosternTLS
import XCTest

/// The known-servers file: updated under a lock, re-read before writing, through a temporary file
/// created exclusively without following links; never read or written through a symbolic link.
final class KnownServersFileTests: XCTestCase {
    private var directory = ""
    private let f1 = KeyFingerprint(subjectPublicKeyInfo: [1, 2, 3])
    private let f2 = KeyFingerprint(subjectPublicKeyInfo: [4, 5, 6])

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "postern-known-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func files() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    func testTwoWritersInSequenceKeepBothEntries() throws {
        let path = directory + "/known"
        // Both read the file before either wrote: the second must not drop the first's entry.
        let a = try KnownServersFile(path: path)
        let b = try KnownServersFile(path: path)
        try a.record(f1, for: "a.example:7000")
        try b.record(f2, for: "b.example:7000")
        let reread = try KnownServersFile(path: path)
        XCTAssertEqual(reread.fingerprint(for: "a.example:7000"), f1)
        XCTAssertEqual(reread.fingerprint(for: "b.example:7000"), f2)
        XCTAssertEqual(b.fingerprint(for: "a.example:7000"), f1, "the writer learns what it re-read")
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        // No temporary file is left behind: only the file and its lock.
        XCTAssertEqual(try files(), ["known", "known.lock"])
    }

    func testAKeyAnotherProcessRecordedForTheSameServerIsKept() throws {
        let path = directory + "/known"
        let a = try KnownServersFile(path: path)
        let b = try KnownServersFile(path: path)
        try a.record(f1, for: "h:1")
        XCTAssertThrowsError(try b.record(f2, for: "h:1")) { error in
            XCTAssertTrue("\(error)".contains("another process recorded key \(self.f1) for h:1"), "\(error)")
        }
        XCTAssertEqual(try KnownServersFile(path: path).fingerprint(for: "h:1"), f1)
        XCTAssertEqual(b.fingerprint(for: "h:1"), f1)
        // The same key recorded twice is no conflict.
        let c = try KnownServersFile(path: directory + "/known2")
        let d = try KnownServersFile(path: directory + "/known2")
        try c.record(f1, for: "h:1")
        XCTAssertNoThrow(try d.record(f1, for: "h:1"))
    }

    func testASymlinkIsRefusedOnReadAndOnWrite() throws {
        let target = directory + "/elsewhere"
        try "h:1 \(f1)\n".write(toFile: target, atomically: false, encoding: .utf8)
        let link = directory + "/known"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        XCTAssertThrowsError(try KnownServersFile(path: link)) { error in
            XCTAssertTrue("\(error)".contains("is a symbolic link"), "\(error)")
        }
        // A link planted after start is refused when writing, and its target is untouched.
        let path = directory + "/known3"
        let file = try KnownServersFile(path: path)
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
        XCTAssertThrowsError(try file.record(f2, for: "h:2")) { error in
            XCTAssertTrue("\(error)".contains("is a symbolic link"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "h:1 \(f1)\n")
        XCTAssertNil(file.fingerprint(for: "h:2"))
    }

    func testALockFileThatIsASymlinkIsNotFollowed() throws {
        let target = directory + "/victim"
        try "keep me\n".write(toFile: target, atomically: false, encoding: .utf8)
        let path = directory + "/known"
        try FileManager.default.createSymbolicLink(atPath: path + ".lock", withDestinationPath: target)
        let file = try KnownServersFile(path: path)
        XCTAssertThrowsError(try file.record(f1, for: "h:1"))
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep me\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    func testConcurrentWritersInThreadsKeepEveryEntry() throws {
        let path = directory + "/known"
        let writers = try (0..<8).map { _ in try KnownServersFile(path: path) }
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            // Each has its own descriptor for the lock file: flock orders them as it orders processes.
            do {
                try writers[i].record(KeyFingerprint(subjectPublicKeyInfo: [UInt8(i)]), for: "h\(i):7000")
            } catch {
                XCTFail("writer \(i): \(error)")
            }
        }
        let reread = try KnownServersFile(path: path)
        for i in 0..<8 {
            XCTAssertEqual(reread.fingerprint(for: "h\(i):7000"), KeyFingerprint(subjectPublicKeyInfo: [UInt8(i)]))
        }
        XCTAssertEqual(try files(), ["known", "known.lock"])
    }
}
