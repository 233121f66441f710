import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PosternCore
import PosternPcap
import XCTest

@testable import PosternServer

#if canImport(Glibc)
    import Glibc
#endif

/// `ctl capture`'s bookkeeping on real forwards: files made fresh, 0600 in a 0700 directory, that
/// read back as pcap; limits refused in words (size out of range, a forward captured twice, too many
/// at once); a capture ends when stopped, when its forward goes, when its size limit is reached, and
/// only the newest finished files are kept.
final class ForwardCapturesTests: XCTestCase {
    private var directory = ""
    private let loop = EmbeddedEventLoop()
    private lazy var registry = MediatorRegistry(events: EventLog(clock: { Date() }), logger: Logger(label: "test"))

    override func setUp() {
        directory = NSTemporaryDirectory() + "postern-captures-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        // The server's state directory exists before any capture (it holds the TLS key).
        XCTAssertEqual(mkdir(directory, 0o700), 0)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func forward(_ port: Int) throws -> TCPForwardToMediator {
        TCPForwardToMediator(
            spec: try ForwardSpec(parsing: "tcp:127.0.0.1:\(port)=acme/192.168.77.10:80"), registry: registry, eventLoop: loop,
            logger: Logger(label: "test"), now: { .now() })
    }

    private func captures(maxActive: Int = 4, maxKept: Int = 16) -> ForwardCaptures {
        ForwardCaptures(settings: .init(directory: directory + "/captures", maxActive: maxActive, maxKept: maxKept))
    }

    func testFilesAreFreshPrivateAndReadable() throws {
        let book = captures()
        let view = try book.start(try forward(8080), maxBytes: nil)
        XCTAssertEqual(view.state, "recording")
        XCTAssertEqual(view.maxBytes, 8 << 20)
        XCTAssertTrue(view.file.hasPrefix(directory + "/captures/capture-"))
        var info = stat()
        XCTAssertEqual(stat(directory + "/captures", &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700)
        XCTAssertEqual(stat(view.file, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        let stopped = try book.stop(id: view.id)
        XCTAssertEqual(stopped.state, "stopped")
        XCTAssertEqual(stopped.reason, "stopped through the admin API")
        XCTAssertEqual(try PcapFileReader.readAll(path: view.file).count, 0, "a valid, empty pcap")
        // Stopping again changes nothing; an unknown id is refused.
        XCTAssertEqual(try book.stop(id: view.id).reason, "stopped through the admin API")
        XCTAssertThrowsError(try book.stop(id: 99)) { XCTAssertEqual(($0 as? ForwardCaptures.Failure)?.kind, .unknown) }
    }

    func testLimitsAreRefusedInWords() throws {
        let book = captures(maxActive: 2)
        let a = try forward(8080)
        for bad in [0, 1_023, (64 << 20) + 1] {
            XCTAssertThrowsError(try book.start(a, maxBytes: bad)) { XCTAssertEqual(($0 as? ForwardCaptures.Failure)?.kind, .invalid) }
        }
        _ = try book.start(a, maxBytes: 4_096)
        XCTAssertThrowsError(try book.start(a, maxBytes: nil)) { error in
            XCTAssertEqual((error as? ForwardCaptures.Failure)?.kind, .conflict)
            XCTAssertTrue("\(error)".contains("is being captured already"))
        }
        _ = try book.start(try forward(8081), maxBytes: nil)
        XCTAssertThrowsError(try book.start(try forward(8082), maxBytes: nil)) { error in
            XCTAssertTrue("\(error)".contains("2 captures run already"))
        }
        XCTAssertEqual(book.views.filter { $0.state == "recording" }.count, 2)
    }

    func testEndsWhenItsForwardGoesAndAtItsSizeLimit() throws {
        let book = captures()
        let a = try forward(8080)
        let b = try forward(8081)
        let first = try book.start(a, maxBytes: nil)
        let second = try book.start(b, maxBytes: 1_024)
        book.forwardStopped(a)
        XCTAssertEqual(book.views.first { $0.id == first.id }?.reason, "the forward was removed")
        XCTAssertNil(book.views.first { $0.id == second.id }?.reason, "another forward's capture runs on")
        // The size limit: packets past it are dropped and the capture ends by itself.
        let recorder = try XCTUnwrap(book.recorder(id: second.id))
        let packet = [UInt8](repeating: 0x45, count: 200)
        for i in 0..<10 { recorder.write(packet, time: Int64(i)) }
        let ended = try XCTUnwrap(book.views.first { $0.id == second.id })
        XCTAssertEqual(ended.state, "stopped")
        XCTAssertEqual(ended.reason, "size limit of 1024 bytes reached")
        XCTAssertEqual(ended.packets, 4)
        XCTAssertLessThanOrEqual(ended.bytes, 1_024)
        XCTAssertGreaterThan(ended.dropped, 0)
        // The forward may be captured again.
        XCTAssertEqual(try book.start(b, maxBytes: nil).state, "recording")
    }

    func testOnlyTheNewestFinishedFilesAreKept() throws {
        let book = captures(maxKept: 1)
        let a = try forward(8080)
        var files: [String] = []
        for _ in 0..<3 {
            let view = try book.start(a, maxBytes: nil)
            files.append(view.file)
            _ = try book.stop(id: view.id)
        }
        _ = try book.start(a, maxBytes: nil)
        XCTAssertEqual(access(files[0], F_OK), -1, "the oldest finished file is deleted")
        XCTAssertEqual(access(files[1], F_OK), -1)
        XCTAssertEqual(access(files[2], F_OK), 0, "the newest finished one is kept")
        XCTAssertEqual(book.views.count, 2)
        XCTAssertNil(book.recorder(id: 1), "a pruned capture is gone from the list")
        book.stopAll(reason: "the server stopped")
        XCTAssertTrue(book.views.allSatisfy { $0.reason != nil })
    }
}
