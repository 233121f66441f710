import Foundation
import PosternWire
import XCTest

/// The frame codec's fuzz check (FrameFuzz/, the code the libFuzzer target runs) replayed without a
/// fuzzer: the committed seed corpus and every input that ever broke a promise of the codec.
final class FrameFuzzRegressionTests: XCTestCase {
    /// Inputs that once broke a promise, kept byte for byte with a line saying what broke
    /// (tools/fuzz/README.md, "Crashes become tests"). None so far.
    static let regressions: [(name: String, why: String, bytes: [UInt8])] = []

    func testEveryKeptCrashInputReplaysClean() throws {
        for input in Self.regressions {
            XCTAssertNoThrow(try checkFrameStream(input.bytes), "\(input.name): \(input.why)")
        }
    }

    /// tools/fuzz/corpus/frames, as committed.
    private static func corpus() throws -> [String: [UInt8]] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/fuzz/corpus/frames")
        var streams: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            streams[name] = Array(try Data(contentsOf: directory.appendingPathComponent(name)))
        }
        return streams
    }

    func testTheSeedCorpusReplaysClean() throws {
        let streams = try Self.corpus()
        XCTAssertGreaterThanOrEqual(streams.count, 29, "seeds missing from tools/fuzz/corpus/frames")
        for (name, bytes) in streams.sorted(by: { $0.key < $1.key }) {
            XCTAssertNoThrow(try checkFrameStream(bytes), name)
        }
        // Each §8 vector is one whole frame, and the handshake stream four.
        for (name, bytes) in streams where name.hasPrefix("8.") {
            XCTAssertEqual(try checkFrameStream(bytes).count, 1, name)
        }
        XCTAssertEqual(
            try checkFrameStream(try XCTUnwrap(streams["multi-handshake"])).map(\.name), ["HELLO", "CHALLENGE", "AUTHENTICATE", "WELCOME"])
    }

    /// Garbage ends the stream with a `WireError` after the frames before it, never a violation.
    func testMalformedStreamsAreNotViolations() throws {
        let ping: [UInt8] = [0, 0, 0, 8, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        XCTAssertEqual(try checkFrameStream(ping + [0, 0, 0, 4, 0x7f, 0, 1, 2, 3, 4]).count, 1)
        XCTAssertEqual(try checkFrameStream(Array(ping.prefix(9))).count, 0)
    }
}
