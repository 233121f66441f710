import Foundation
import NIOCore
import PosternCore
import PosternWire
import XCTest

/// The per-session keys of docs/protocol.md §4.5, as the handshake derives them at both ends.
final class SessionKeysTests: XCTestCase {
    typealias F = Fixture

    /// The inputs of the protocol document's worked example (§8's handshake inputs).
    private enum Doc {
        static let secret = Array("correct horse battery staple".utf8)
        static let serverNonce = Array(UInt8(0xa0)...UInt8(0xbf))
        static let mediatorNonce = Array(UInt8(0x00)...UInt8(0x1f))
        static let binding = Array(UInt8(0xc0)...UInt8(0xdf))
        static let sessionID: UInt64 = 0x0123_4567_89ab_cdef

        static func key(_ label: SessionKeys.Label, binding: [UInt8]) -> String {
            SessionKeys.derive(
                label, secret: secret, serverNonce: serverNonce, mediatorNonce: mediatorNonce, binding: binding,
                sessionID: sessionID, name: "acme"
            ).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        }
    }

    private func establish(_ link: SessionLink, file: StaticString = #filePath, line: UInt = #line) throws -> (
        server: SessionKeys, mediator: SessionKeys
    ) {
        link.start()
        try link.pump(file: file, line: line)
        let server = try XCTUnwrap(link.serverLog.established.first, "server not established", file: file, line: line)
        let mediator = try XCTUnwrap(link.mediatorLog.established.first, "mediator not established", file: file, line: line)
        return (server.keys, mediator.keys)
    }

    func testBothEndsDeriveTheSameKeysOnePerDirection() throws {
        for binding in [[], Doc.binding] {
            let (server, mediator) = try establish(F.link(serverBinding: binding))
            XCTAssertEqual(server.sending, mediator.receiving, "what the server seals, the mediator opens")
            XCTAssertEqual(server.receiving, mediator.sending, "what the mediator seals, the server opens")
            XCTAssertNotEqual(server.sending, server.receiving, "the two directions share a key")
            XCTAssertEqual(server.sending.count, SessionKeys.length)
            XCTAssertEqual(server.receiving.count, SessionKeys.length)
            XCTAssertEqual(server, F.keys(.server, binding: binding))
        }
    }

    func testEverySessionAndPathHasItsOwnKeys() throws {
        let first = try establish(F.link()).server
        let otherSession = try establish(F.link(sessionID: F.sessionID + 1)).server
        let otherNonce = try establish(F.link(mediatorNonce: Array(repeating: 0x42, count: 32))).server
        let bound = try establish(F.link(serverBinding: Doc.binding)).server
        let all = [first, otherSession, otherNonce, bound]
        XCTAssertEqual(Set(all.map(\.sending)).count, all.count, "two sessions share a sending key")
        XCTAssertEqual(Set(all.map(\.receiving)).count, all.count, "two sessions share a receiving key")
    }

    func testKeysAreNeverPrinted() throws {
        let (server, _) = try establish(F.link())
        let link = F.link()
        link.start()
        try link.pump()
        let info = try XCTUnwrap(link.serverLog.established.first)
        var dumped = ""
        dump(info, to: &dumped)
        for text in ["\(server)", String(reflecting: server), "\(info)", String(reflecting: info), dumped, "\(link.serverLog)"] {
            for key in [server.sending, server.receiving] {
                XCTAssertFalse(text.contains(Self.hex(key)), "a key in: \(text)")
                XCTAssertFalse(text.contains(key.map(String.init).joined(separator: ", ")), "a key in: \(text)")
            }
        }
        XCTAssertTrue("\(info)".contains("redacted"), "\(info)")
    }

    /// Known answers computed apart from swift-crypto (Python's hmac, RFC 5869 by hand), and the
    /// document's worked example still showing them.
    func testProtocolDocumentVectors() throws {
        let vectors = [
            ("7336a355e5b0e260dc5a923fd5d157aac165a77cdd497038733c3a72574221a3", Doc.key(.serverToMediator, binding: [])),
            ("0d83a88f1194c7207c440006c8f4b6e1762cf912c06fe362b0ea66e461e76624", Doc.key(.mediatorToServer, binding: [])),
            ("72c9398c911c077eb64ad6dfec3b66bc266d5a3b0cffcf0cfaad6d3d0b36977a", Doc.key(.serverToMediator, binding: Doc.binding)),
            ("9374476ad79a0a9f1fe88ba3c1481e4dc9c47bce3cc36b9ea1e1d9f8f0b49636", Doc.key(.mediatorToServer, binding: Doc.binding)),
        ]
        for (known, derived) in vectors { XCTAssertEqual(derived, known) }

        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/protocol.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let section = try XCTUnwrap(Self.section("### 4.5 ", in: text), "docs/protocol.md has no §4.5")
        let shown = section.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ")
            guard words.count == 4, words[1] == "to", words[3].count == 64 else { return nil }
            return "\(words[0]) \(words[2]) \(words[3])"
        }
        XCTAssertEqual(
            shown,
            [
                "server mediator \(Doc.key(.serverToMediator, binding: []))",
                "mediator server \(Doc.key(.mediatorToServer, binding: []))",
                "server mediator \(Doc.key(.serverToMediator, binding: Doc.binding))",
                "mediator server \(Doc.key(.mediatorToServer, binding: Doc.binding))",
            ], "docs/protocol.md §4.5 worked example")
        for label in SessionKeys.Label.allCases {
            XCTAssertTrue(section.contains("\"\(label.rawValue)\""), "§4.5 does not name the label \(label.rawValue)")
        }
    }

    private static func section(_ heading: String, in text: String) -> String? {
        guard let start = text.range(of: "\n" + heading) else { return nil }
        let rest = text[start.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        return String(rest[..<end])
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
