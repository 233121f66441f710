import Foundation
import XCTest

@testable import postern

/// README's configuration reference (issue 14, item 8) against the keys the commands accept: a key
/// the code takes must be documented, and a documented key must be one the code takes.
final class ConfigReferenceTests: XCTestCase {
    /// The `section.key` names in the first column of README's "Configuration file" table rows.
    private func documentedKeys() throws -> [String: Set<String>] {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        var keys: [String: Set<String>] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let firstColumn = line.dropFirst(2).prefix { $0 != "|" }
            for quoted in firstColumn.split(separator: "`") {
                let parts = quoted.split(separator: ".", maxSplits: 1)
                guard parts.count == 2, ["server", "mediator"].contains(parts[0]),
                    parts[1].allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" })
                else { continue }
                keys[String(parts[0]), default: []].insert(String(parts[1]))
            }
        }
        return keys
    }

    func testEveryServerKeyIsDocumentedAndEveryDocumentedKeyIsAccepted() throws {
        let documented = try documentedKeys()["server"] ?? []
        XCTAssertFalse(documented.isEmpty, "no server.* rows found in README")
        XCTAssertEqual(ServerCommand.configKeys.subtracting(documented), [], "accepted by the server, missing in README")
        XCTAssertEqual(documented.subtracting(ServerCommand.configKeys), [], "in README, not accepted by the server")
    }

    func testEveryMediatorKeyIsDocumentedAndEveryDocumentedKeyIsAccepted() throws {
        let documented = try documentedKeys()["mediator"] ?? []
        XCTAssertFalse(documented.isEmpty, "no mediator.* rows found in README")
        XCTAssertEqual(MediatorCommand.configKeys.subtracting(documented), [], "accepted by the mediator, missing in README")
        XCTAssertEqual(documented.subtracting(MediatorCommand.configKeys), [], "in README, not accepted by the mediator")
    }
}
