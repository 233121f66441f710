import Foundation
import XCTest

@testable import postern

/// Error texts of the command line that a stranger reads first.
final class CommandErrorTextTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("postern-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func refusal(_ text: String) throws -> String {
        let path = directory.appendingPathComponent("c.toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try ConfigFile(path: path)
            return "parsed"
        } catch {
            return "\(error)"
        }
    }

    func testATOMLErrorSaysWhatIsWrongNotOnlyWhere() throws {
        // A duplicate key said only "is not valid TOML (line 3, column 1)".
        let message = try refusal("[server]\nkeepalive = 3\nkeepalive = 4\n")
        XCTAssertTrue(message.contains("is not valid TOML (line 3"), message)
        XCTAssertTrue(message.contains("keepalive"), message)
    }

    func testAWrongTypeAndAnUnknownKeyNameTheirLine() throws {
        // TOMLKit keeps no positions for values: "[server] keepalive must be a number of seconds" left
        // a stranger to search the file.
        let path = directory.appendingPathComponent("c.toml").path
        let text = "# postern\n[mediator]\nkeepalive = 1\n\n[server]\nlisten = \"0.0.0.0:7000\"\n  keepalive   = \"ten\"\ntun-mtu = 1400\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let section = try XCTUnwrap(try ConfigFile(path: path).section("server", allowed: ["listen", "keepalive", "tun-mtu"]))
        XCTAssertThrowsError(try section.seconds("keepalive")) { error in
            XCTAssertEqual("\(error)", "\(path) line 7: [server] keepalive must be a number of seconds")
        }
        XCTAssertEqual(ConfigFile.line(of: "tun", in: "server", text: text), nil, "tun-mtu is not tun")
        XCTAssertEqual(ConfigFile.line(of: "tun-mtu", in: "server", text: text), 8)
        XCTAssertThrowsError(try ConfigFile(path: path).section("server", allowed: ["listen", "keepalive"])) { error in
            XCTAssertTrue("\(error)".hasPrefix("config file \(path) line 8: unknown key 'tun-mtu' in [server]"), "\(error)")
        }
    }

    func testAUsageErrorAtRunTimeShowsTheSubcommandsUsage() {
        // `ctl forwards add` without FORWARD is found in run(): it printed `Usage: postern <subcommand>`.
        let text = Postern.usageError("use: ctl forwards [list] | add FORWARD", of: CtlCommand.Forwards.self)
        XCTAssertTrue(text.hasPrefix("Error: use: ctl forwards [list] | add FORWARD\nUsage: postern ctl forwards "), text)
        XCTAssertTrue(text.hasSuffix("\n  See 'postern ctl forwards --help' for more information.\n"), text)
    }
}
