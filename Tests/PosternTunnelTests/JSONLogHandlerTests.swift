import Foundation
import Logging
import PosternTunnel
import XCTest

/// `--log-format json`: every line is one JSON object with time, level, logger and message, whatever
/// the message holds (a peer's text with quotes, newlines, control characters), and the metadata
/// cannot replace those four fields.
final class JSONLogHandlerTests: XCTestCase {
    private func parse(_ line: String) throws -> [String: String] {
        XCTAssertTrue(line.hasSuffix("\n"))
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1, "exactly one line")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
    }

    func testFieldsAndTimestamp() throws {
        let line = JSONLogHandler.line(
            time: Date(timeIntervalSince1970: 1_796_040_000.123), level: .warning, logger: "postern.server",
            message: "mediator 'a' connected",
            metadata: ["session": "7"])
        XCTAssertEqual(
            try parse(line),
            [
                "time": "2026-11-30T12:00:00.123Z", "level": "warning", "logger": "postern.server", "message": "mediator 'a' connected",
                "session": "7",
            ])
    }

    func testHostileTextStaysOneObjectOnOneLine() throws {
        let nasty = "a\"b\\c\nd\re\u{0}f\u{1b}[31mg\u{2028}h\u{7f}\"},{\"level\":\"error"
        let line = JSONLogHandler.line(time: Date(), level: .info, logger: "x", message: nasty, metadata: [nasty: "\(nasty)"])
        let parsed = try parse(line)
        XCTAssertEqual(parsed["message"], nasty)
        XCTAssertEqual(parsed[nasty], nasty)
        XCTAssertEqual(parsed["level"], "info")
        XCTAssertFalse(line.dropLast().contains { $0.asciiValue.map { $0 < 0x20 } ?? false }, "no raw control characters")
    }

    func testMetadataCannotReplaceTheFixedFields() throws {
        let line = JSONLogHandler.line(
            time: Date(), level: .info, logger: "real", message: "real message", metadata: ["level": "critical", "message": "forged"])
        let parsed = try parse(line)
        XCTAssertEqual(parsed["level"], "info")
        XCTAssertEqual(parsed["message"], "real message")
    }

    func testHandlerWritesWholeLines() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        var logger = Logger(label: "t") { JSONLogHandler(label: $0, fd: fds[1]) }
        logger.logLevel = .debug
        logger[metadataKey: "mediator"] = "acme"
        logger.debug("one")
        logger.info("two", metadata: ["port": "3"])
        close(fds[1])
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let n = read(fds[0], &buffer, buffer.count), n > 0 { data.append(contentsOf: buffer[0..<n]) }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map { String($0) + "\n" }
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(try parse(lines[0])["message"], "one")
        XCTAssertEqual(try parse(lines[0])["mediator"], "acme")
        XCTAssertEqual(try parse(lines[1])["port"], "3")
        XCTAssertEqual(try parse(lines[1])["level"], "info")
    }
}
