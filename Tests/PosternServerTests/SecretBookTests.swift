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
        let book = try SecretBook.parse("s3cret-Value_1-longer\n", source: "secrets.txt")
        XCTAssertEqual(book.shared, bytes("s3cret-Value_1-longer"))
        XCTAssertEqual(book.perMediator, [:])
        XCTAssertEqual(book.secret(for: "acme"), bytes("s3cret-Value_1-longer"))
        XCTAssertEqual(book.secret(for: "anyone-else"), bytes("s3cret-Value_1-longer"))
    }

    func testASharedSecretIsWarnedAboutAndPerMediatorSecretsAreNot() throws {
        let shared = try SecretBook.parse("s3cret-Value_1-longer\n", source: "secrets.txt")
        let warning = try XCTUnwrap(shared.sharedSecretWarning)
        XCTAssertTrue(warning.contains("any mediator can connect under another's name"), warning)
        XCTAssertTrue(warning.contains("'NAME SECRET' lines") && warning.contains("--mediator-ca"), warning)
        XCTAssertFalse(warning.contains("s3cret"), "the secret is never shown")
        XCTAssertNil(
            try SecretBook.parse("acme a-secret-long-enough\nbeta b-secret-long-enough\n", source: "secrets.txt").sharedSecretWarning)
    }

    func testSharedSecretIgnoresCommentsBlankLinesAndCRLF() throws {
        let text = "# the secret of every mediator\r\n\r\n   \t\r\n  s3cret-Value_1-longer \t\r\n# rotated 2024\r\n"
        let book = try SecretBook.parse(text, source: "secrets.txt")
        XCTAssertEqual(book.shared, bytes("s3cret-Value_1-longer"))
        XCTAssertEqual(book.perMediator, [:])
    }

    func testSharedSecretWithoutTrailingNewlineOrWithBareCR() throws {
        XCTAssertEqual(try SecretBook.parse("abcdefghijklmnop", source: "s").shared, bytes("abcdefghijklmnop"))
        XCTAssertEqual(try SecretBook.parse("#c\rabcdefghijklmnop\r", source: "s").shared, bytes("abcdefghijklmnop"))
    }

    // MARK: - One secret per mediator

    func testPerMediatorLines() throws {
        let text = """
            # name   secret
            acme secret-1-of-enough-bytes
            beta\tsecret-2-of-enough-bytes with spaces inside

            gamma     secret-3-of-enough-bytes   \r
            """
        let book = try SecretBook.parse(text, source: "secrets.txt")
        XCTAssertNil(book.shared)
        XCTAssertEqual(
            book.perMediator,
            [
                "acme": bytes("secret-1-of-enough-bytes"), "beta": bytes("secret-2-of-enough-bytes with spaces inside"),
                "gamma": bytes("secret-3-of-enough-bytes"),
            ])
        XCTAssertEqual(book.secret(for: "acme"), bytes("secret-1-of-enough-bytes"))
        XCTAssertEqual(book.secret(for: "beta"), bytes("secret-2-of-enough-bytes with spaces inside"))
        XCTAssertEqual(book.secret(for: "gamma"), bytes("secret-3-of-enough-bytes"))
        XCTAssertNil(book.secret(for: "delta"), "names not in the file are unknown")
        XCTAssertNil(book.secret(for: "ACME"), "names are case-sensitive")
    }

    func testASingleNameSecretLineIsPerMediator() throws {
        let book = try SecretBook.parse("acme secret-1-of-enough-bytes\n", source: "secrets.txt")
        XCTAssertNil(book.shared)
        XCTAssertEqual(book.perMediator, ["acme": bytes("secret-1-of-enough-bytes")])
        XCTAssertNil(book.secret(for: "beta"))
    }

    func testPerMediatorLinesWithCRLF() throws {
        let book = try SecretBook.parse("acme secret-1-of-enough-bytes\r\nbeta secret-2-of-enough-bytes\r\n", source: "secrets.txt")
        XCTAssertEqual(book.perMediator, ["acme": bytes("secret-1-of-enough-bytes"), "beta": bytes("secret-2-of-enough-bytes")])
    }

    func testPerMediatorSecretWinsOverShared() {
        let book = SecretBook(shared: bytes("shared"), perMediator: ["acme": bytes("own")])
        XCTAssertEqual(book.secret(for: "acme"), bytes("own"))
        XCTAssertEqual(book.secret(for: "beta"), bytes("shared"))
    }

    // MARK: - Invalid files

    func testInvalidMediatorName() throws {
        let message = try XCTUnwrap(parseError("acme secret-1-of-enough-bytes\nbad/name secret-2-of-enough-bytes\n"))
        XCTAssertTrue(message.contains("secrets.txt"), message)
        XCTAssertTrue(message.contains("line 2"), message)
        XCTAssertTrue(message.contains("not a valid mediator name"), message)
        XCTAssertFalse(message.contains("bad/name"), "a first word may be part of a secret: \(message)")
        XCTAssertFalse(message.contains("secret-2-of-enough-bytes"), "the secret is not shown: \(message)")
    }

    func testMalformedLine() throws {
        let message = try XCTUnwrap(parseError("acme secret-1-of-enough-bytes\nlonely-token\nbeta secret-2-of-enough-bytes\n"))
        XCTAssertTrue(message.contains("secrets.txt line 2: expected 'NAME SECRET'"), message)
        XCTAssertFalse(message.contains("lonely-token"), "a lone token may be a secret: \(message)")
        XCTAssertFalse(message.contains("secret-1-of-enough-bytes"), message)
    }

    func testErrorsNameTheLineOfTheFileCountingCommentsAndBlankLines() throws {
        let text = "# secrets of the lab\n\nacme secret-1-of-enough-bytes\n# beta moved\nlonely-token\n"
        let message = try XCTUnwrap(parseError(text))
        XCTAssertTrue(message.contains("secrets.txt line 5:"), message)
        let crlf = try XCTUnwrap(parseError("# header\r\n\r\nacme secret-1-of-enough-bytes\r\nb@d secret-2-of-enough-bytes\r\n"))
        XCTAssertTrue(crlf.contains("secrets.txt line 4:"), crlf)
    }

    func testShortSecretsAreRefusedWithTheirLengthAndNeverShown() throws {
        let shared = try XCTUnwrap(parseError("hunter\n"))
        XCTAssertEqual(
            shared,
            "the secret in secrets.txt is 6 bytes; at least 16 are needed (make one with: head -c 24 /dev/urandom | base64)")
        XCTAssertFalse(shared.contains("hunter"), shared)
        // 15 bytes fail, 16 pass: the trailing newline, CR and blanks do not count.
        XCTAssertNotNil(parseError("0123456789abcde\r\n"))
        XCTAssertEqual(try SecretBook.parse("0123456789abcdef \r\n", source: "s").shared, bytes("0123456789abcdef"))
        let per = try XCTUnwrap(parseError("# lab\nacme secret-long-enough-1\nbeta short\n"))
        XCTAssertTrue(per.hasPrefix("the secret for 'beta' in secrets.txt line 3 is 5 bytes; at least 16"), per)
        XCTAssertFalse(per.contains("short"), per)
        XCTAssertFalse(per.contains("secret-long"), per)
        // Bytes, not characters: eight two-byte letters are enough.
        XCTAssertEqual(try SecretBook.parse("éééééééé", source: "s").shared?.count, 16)
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

        let per = try SecretBook.parse("acme hunter2-a-long-enough\nbeta hunter3-b-long-enough\n", source: "s")
        XCTAssertFalse(per.description.contains("hunter"), per.description)
        XCTAssertTrue(per.description.contains("acme"), per.description)
        XCTAssertTrue(per.description.contains("beta"), per.description)
    }
}
