import PosternCore
import XCTest

/// Fingerprints as users write them, and the trust-on-first-use record.
final class KnownServersTests: XCTestCase {
    private let hex = "863b7796482729cc2529641f4014c0d0773b1f0f91066b0705dad7fec98b4aba"

    func testFingerprintRoundTripsAndAcceptsCommonSpellings() throws {
        let f = try XCTUnwrap(KeyFingerprint(parsing: "sha256:" + hex))
        XCTAssertEqual(f.description, "sha256:" + hex)
        XCTAssertEqual(f.bytes.count, 32)
        XCTAssertEqual(KeyFingerprint(parsing: hex), f)
        XCTAssertEqual(KeyFingerprint(parsing: "SHA256:" + hex.uppercased()), f)
        let colons = stride(from: 0, to: 64, by: 2).map { i -> String in
            let a = hex.index(hex.startIndex, offsetBy: i)
            return String(hex[a..<hex.index(a, offsetBy: 2)])
        }.joined(separator: ":")
        XCTAssertEqual(KeyFingerprint(parsing: colons), f)
        XCTAssertEqual(KeyFingerprint(parsing: "  sha256:\(hex)\n"), f)
    }

    func testFingerprintRejectsWrongLengthsAndNonHex() {
        XCTAssertNil(KeyFingerprint(parsing: ""))
        XCTAssertNil(KeyFingerprint(parsing: "sha256:"))
        XCTAssertNil(KeyFingerprint(parsing: String(hex.dropLast())))
        XCTAssertNil(KeyFingerprint(parsing: hex + "00"))
        XCTAssertNil(KeyFingerprint(parsing: "sha256:" + String(hex.dropLast()) + "g"))
        XCTAssertNil(KeyFingerprint(parsing: "md5:" + hex))
        XCTAssertNil(KeyFingerprint(bytes: [1, 2, 3]))
    }

    func testFingerprintIsSHA256OfTheKeyInfo() throws {
        // SHA-256("abc"), the FIPS 180-2 test vector.
        let f = KeyFingerprint(subjectPublicKeyInfo: Array("abc".utf8))
        XCTAssertEqual(f.description, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testRecordThenLookUpAndRenderParsesBack() throws {
        var known = KnownServers()
        let a = try XCTUnwrap(KeyFingerprint(parsing: hex))
        let b = KeyFingerprint(subjectPublicKeyInfo: [1])
        XCTAssertNil(known.fingerprint(for: "203.0.113.10:7000"))
        known.record(a, for: "203.0.113.10:7000")
        known.record(b, for: "[fd00::1]:7000")
        XCTAssertEqual(known.fingerprint(for: "203.0.113.10:7000"), a)
        XCTAssertEqual(known.fingerprint(for: "[fd00::1]:7000"), b)
        XCTAssertNil(known.fingerprint(for: "203.0.113.10:7001"), "the port is part of the identity")
        XCTAssertEqual(try KnownServers(parsing: known.rendered(), source: "t"), known)
    }

    func testRecordNeverReplacesAKnownKey() throws {
        var known = KnownServers()
        let a = try XCTUnwrap(KeyFingerprint(parsing: hex))
        known.record(a, for: "s:1")
        known.record(KeyFingerprint(subjectPublicKeyInfo: [9]), for: "s:1")
        XCTAssertEqual(known.fingerprint(for: "s:1"), a)
        XCTAssertEqual(known.entries.count, 1)
    }

    func testParseSkipsCommentsAndBlankLinesAndNamesBadLines() throws {
        let text = "# comment\n\n  203.0.113.10:7000\tsha256:\(hex)  \n"
        let known = try KnownServers(parsing: text, source: "f")
        XCTAssertEqual(known.entries.count, 1)
        XCTAssertThrowsError(try KnownServers(parsing: "# x\nhost:1\n", source: "f")) { error in
            XCTAssertEqual("\(error)", "f line 2: expected 'HOST:PORT sha256:HEX'")
        }
        XCTAssertThrowsError(try KnownServers(parsing: "host:1 sha256:abc\n", source: "f"))
        XCTAssertThrowsError(try KnownServers(parsing: "host:1 sha256:\(hex) extra\n", source: "f"))
    }

    func testTheSameServerWithTwoKeysIsAnError() {
        let other = String(repeating: "0", count: 64)
        XCTAssertThrowsError(try KnownServers(parsing: "h:1 \(hex)\nh:1 \(other)\n", source: "f")) { error in
            XCTAssertTrue("\(error)".contains("listed twice"), "\(error)")
        }
        // The same key twice is harmless.
        XCTAssertEqual(try KnownServers(parsing: "h:1 \(hex)\nh:1 \(hex)\n", source: "f").entries.count, 1)
    }

    func testTrustAcceptsOnlyThePinnedKey() throws {
        let a = try XCTUnwrap(KeyFingerprint(parsing: hex))
        let b = KeyFingerprint(subjectPublicKeyInfo: [1])
        XCTAssertTrue(ServerTrust.pinned(a, source: "x").accepts(a))
        XCTAssertFalse(ServerTrust.pinned(a, source: "x").accepts(b))
        XCTAssertTrue(ServerTrust.firstUse.accepts(b))
    }
}
