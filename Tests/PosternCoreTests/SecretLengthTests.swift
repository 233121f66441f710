import PosternCore
import XCTest

/// Secrets and admin tokens shorter than 16 bytes are refused with their length, never their text.
final class SecretLengthTests: XCTestCase {
    func testSecretsBelowSixteenBytesAreRefusedAndSixteenPass() {
        for n in 0..<SecretLength.minimum {
            let secret = [UInt8](repeating: 0x61, count: n)
            XCTAssertEqual(
                SecretLength.refusal(secret, in: "/etc/postern/secret"),
                "the secret in /etc/postern/secret is \(n) bytes; at least 16 are needed (make one with: head -c 24 /dev/urandom | base64)"
            )
        }
        XCTAssertNil(SecretLength.refusal([UInt8](repeating: 0x61, count: 16), in: "f"))
        XCTAssertNil(SecretLength.refusal([UInt8](repeating: 0x61, count: 4096), in: "f"))
    }

    func testTheRefusalNamesWhatAndWhereButNeverTheSecret() throws {
        let message = try XCTUnwrap(SecretLength.refusal(Array("hunter2".utf8), what: "the secret for 'acme'", in: "book line 3"))
        XCTAssertTrue(message.hasPrefix("the secret for 'acme' in book line 3 is 7 bytes"), message)
        XCTAssertFalse(message.contains("hunter2"), message)
    }

    func testTokensCountCharacters() throws {
        let message = try XCTUnwrap(SecretLength.tokenRefusal("tok-12345", in: "$POSTERN_ADMIN_TOKEN"))
        XCTAssertTrue(message.hasPrefix("the admin token in $POSTERN_ADMIN_TOKEN is 9 characters; at least 16"), message)
        XCTAssertFalse(message.contains("tok-12345"), message)
        XCTAssertNotNil(SecretLength.tokenRefusal(String(repeating: "x", count: 15), in: "f"))
        XCTAssertNil(SecretLength.tokenRefusal(String(repeating: "x", count: 16), in: "f"))
    }
}
