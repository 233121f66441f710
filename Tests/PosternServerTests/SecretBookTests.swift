import PosternServer
import XCTest

/// The server's secret file: one shared secret, or `NAME SECRET` lines.
final class SecretBookTests: XCTestCase {
    private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    private func parseError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            let book = try SecretBook.parse(text, source: "secrets.txt")
            XCTFail("parsed into \(book)", file: file, line: line)
            return nil
        } catch let e as SecretBook.ParseError {
            return e.description
        } catch {
            XCTFail("\(error) is not a ParseError", file: file, line: line)
            return nil
        }
    }

    // MARK: - One shared secret

    func testSingleLineIsASharedSecretForEveryName() throws {
        let book = try SecretBook.parse("s3cret-Value_1\n", source: "secrets.txt")
        XCTAssertEqual(book.shared, bytes("s3cret-Value_1"))
        XCTAssertEqual(book.perMediator, [:])
        XCTAssertEqual(book.secret(for: "acme"), bytes("s3cret-Value_1"))
        XCTAssertEqual(book.secret(for: "anyone-else"), bytes("s3cret-Value_1"))
    }

    func testASharedSecretIsWarnedAboutAndPerMediatorSecretsAreNot() throws {
        let shared = try SecretBook.parse("s3cret-Value_1\n", source: "secrets.txt")
        let warning = try XCTUnwrap(shared.sharedSecretWarning)
        XCTAssertTrue(warning.contains("any mediator can connect under another's name"), warning)
        XCTAssertTrue(warning.contains("'NAME SECRET' lines") && warning.contains("--mediator-ca"), warning)
        XCTAssertFalse(warning.contains("s3cret"), "the secret is never shown")
        XCTAssertNil(try SecretBook.parse("acme a-secret\nbeta b-secret\n", source: "secrets.txt").sharedSecretWarning)
    }

    func testSharedSecretIgnoresCommentsBlankLinesAndCRLF() throws {
        let text = "# the secret of every mediator\r\n\r\n   \t\r\n  s3cret-Value_1 \t\r\n# rotated 2024\r\n"
        let book = try SecretBook.parse(text, source: "secrets.txt")
        XCTAssertEqual(book.shared, bytes("s3cret-Value_1"))
        XCTAssertEqual(book.perMediator, [:])
    }

    func testSharedSecretWithoutTrailingNewlineOrWithBareCR() throws {
        XCTAssertEqual(try SecretBook.parse("abc", source: "s").shared, bytes("abc"))
        XCTAssertEqual(try SecretBook.parse("#c\rabc\r", source: "s").shared, bytes("abc"))
    }

    // MARK: - One secret per mediator

    func testPerMediatorLines() throws {
        let text = """
            # name   secret
            acme s1
            beta\ts2 with spaces inside

            gamma     s3   \r
            """
        let book = try SecretBook.parse(text, source: "secrets.txt")
        XCTAssertNil(book.shared)
        XCTAssertEqual(book.perMediator, ["acme": bytes("s1"), "beta": bytes("s2 with spaces inside"), "gamma": bytes("s3")])
        XCTAssertEqual(book.secret(for: "acme"), bytes("s1"))
        XCTAssertEqual(book.secret(for: "beta"), bytes("s2 with spaces inside"))
        XCTAssertEqual(book.secret(for: "gamma"), bytes("s3"))
        XCTAssertNil(book.secret(for: "delta"), "names not in the file are unknown")
        XCTAssertNil(book.secret(for: "ACME"), "names are case-sensitive")
    }

    func testASingleNameSecretLineIsPerMediator() throws {
        let book = try SecretBook.parse("acme s1\n", source: "secrets.txt")
        XCTAssertNil(book.shared)
        XCTAssertEqual(book.perMediator, ["acme": bytes("s1")])
        XCTAssertNil(book.secret(for: "beta"))
    }

    func testPerMediatorLinesWithCRLF() throws {
        let book = try SecretBook.parse("acme s1\r\nbeta s2\r\n", source: "secrets.txt")
        XCTAssertEqual(book.perMediator, ["acme": bytes("s1"), "beta": bytes("s2")])
    }

    func testPerMediatorSecretWinsOverShared() {
        let book = SecretBook(shared: bytes("shared"), perMediator: ["acme": bytes("own")])
        XCTAssertEqual(book.secret(for: "acme"), bytes("own"))
        XCTAssertEqual(book.secret(for: "beta"), bytes("shared"))
    }

    // MARK: - Invalid files

    func testInvalidMediatorName() throws {
        let message = try XCTUnwrap(parseError("acme s1\nbad/name s2\n"))
        XCTAssertTrue(message.contains("secrets.txt"), message)
        XCTAssertTrue(message.contains("line 2"), message)
        XCTAssertTrue(message.contains("not a valid mediator name"), message)
        XCTAssertFalse(message.contains("bad/name"), "a first word may be part of a secret: \(message)")
        XCTAssertFalse(message.contains("s2"), "the secret is not shown: \(message)")
    }

    func testMalformedLine() throws {
        let message = try XCTUnwrap(parseError("acme s1\nlonely-token\nbeta s2\n"))
        XCTAssertTrue(message.contains("secrets.txt line 2: expected 'NAME SECRET'"), message)
        XCTAssertFalse(message.contains("lonely-token"), "a lone token may be a secret: \(message)")
        XCTAssertFalse(message.contains("s1"), message)
    }

    func testErrorsNameTheLineOfTheFileCountingCommentsAndBlankLines() throws {
        let text = "# secrets of the lab\n\nacme s1\n# beta moved\nlonely-token\n"
        let message = try XCTUnwrap(parseError(text))
        XCTAssertTrue(message.contains("secrets.txt line 5:"), message)
        let crlf = try XCTUnwrap(parseError("# header\r\n\r\nacme s1\r\nb@d s2\r\n"))
        XCTAssertTrue(crlf.contains("secrets.txt line 4:"), crlf)
    }

    func testEmptyFile() throws {
        for text in ["", "\n", "\r\n\r\n", "   \n\t\n", "# nothing here yet\n#\n"] {
            let message = try XCTUnwrap(parseError(text), text.debugDescription)
            XCTAssertEqual(message, "secrets.txt holds no secret", text.debugDescription)
        }
    }

    // MARK: - Never showing a secret

    func testDescriptionNeverShowsTheSecret() throws {
        let shared = try SecretBook.parse("hunter2-very-secret\n", source: "s")
        XCTAssertFalse(shared.description.contains("hunter2"), shared.description)
        XCTAssertTrue(shared.description.contains("shared secret"), shared.description)
        XCTAssertFalse(String(describing: shared).contains("hunter2"))
        XCTAssertFalse("\(shared)".contains("hunter2"))

        let per = try SecretBook.parse("acme hunter2-a\nbeta hunter3-b\n", source: "s")
        XCTAssertFalse(per.description.contains("hunter"), per.description)
        XCTAssertTrue(per.description.contains("acme"), per.description)
        XCTAssertTrue(per.description.contains("beta"), per.description)
    }
}
