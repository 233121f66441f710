import PosternWire
import XCTest

/// Text a peer chose is logged without control characters and within a length bound.
final class PeerTextTests: XCTestCase {
    private static let controls: Set<UInt32> = Set(0x00...0x1F).union(0x7F...0x9F).union(0x202A...0x202E)
        .union(0x2066...0x2069).union([0x061C, 0x200E, 0x200F, 0x2028, 0x2029])

    func testEveryScalarOfTheBMPAndBeyondIsEscapedExactlyWhenItIsAControl() {
        // Every scalar below U+3000 (C0, C1, DEL, bidi and separators all lie there), every 97th above.
        let values: [UInt32] = Array(0..<0x3000) + Array(stride(from: 0x3000, through: 0x10FFFF, by: 97))
        for value in values {
            guard let scalar = Unicode.Scalar(value) else { continue }  // surrogates
            let text = "a" + String(Character(scalar)) + "b"
            let out = PeerText.sanitized(text)
            if Self.controls.contains(value) {
                XCTAssertEqual(out, "a\\u{\(String(value, radix: 16))}b", "U+\(String(value, radix: 16))")
                XCTAssertTrue(PeerText.isControl(scalar))
            } else {
                XCTAssertEqual(out, text, "U+\(String(value, radix: 16)) must be kept")
                XCTAssertFalse(PeerText.isControl(scalar))
            }
        }
    }

    func testANewlineAndATerminalEscapeCannotForgeALogLine() {
        let forged = "bye\u{1b}[2J\n2026-11-30T10:00:00 info: mediator 'acme' connected"
        let out = PeerText.sanitized(forged)
        XCTAssertEqual(out, "bye\\u{1b}[2J\\u{a}2026-11-30T10:00:00 info: mediator 'acme' connected")
        XCTAssertFalse(out.unicodeScalars.contains { PeerText.isControl($0) })
        XCTAssertEqual(PeerText.sanitized("tab\there\r\u{0}\u{7f}\u{85}"), "tab\\u{9}here\\u{d}\\u{0}\\u{7f}\\u{85}")
        XCTAssertEqual(PeerText.sanitized("evil\u{202e}txt.exe\u{2066}x\u{2069}"), "evil\\u{202e}txt.exe\\u{2066}x\\u{2069}")
    }

    func testOrdinaryTextIsKeptAsItIs() {
        for text in ["", "connection refused", "Ünïcödé 日本語 🙂 e\u{301}", "C:\\path\\u{41}", String(repeating: "x", count: 256)] {
            XCTAssertEqual(PeerText.sanitized(text), text)
        }
    }

    func testLongTextIsCutWithAnEllipsisWithinTheBound() {
        for length in [257, 258, 1000, 100_000] {
            let out = PeerText.sanitized(String(repeating: "x", count: length))
            XCTAssertEqual(out.unicodeScalars.count, 256)
            XCTAssertEqual(out, String(repeating: "x", count: 255) + "…")
        }
        XCTAssertEqual(PeerText.sanitized("abcdef", maxLength: 4), "abc…")
        XCTAssertEqual(PeerText.sanitized("abcd", maxLength: 4), "abcd")
        XCTAssertEqual(PeerText.sanitized("ab", maxLength: 1), "…")
        XCTAssertEqual(PeerText.sanitized("a", maxLength: 1), "a")
        // Multi-byte text is bounded in scalars, not cut inside one.
        XCTAssertEqual(PeerText.sanitized(String(repeating: "é", count: 300), maxLength: 10), String(repeating: "é", count: 9) + "…")
    }

    func testAnEscapeIsNeverCutInHalfAndTheBoundHoldsWithEscapes() {
        // "ab" + "\u{1b}" (6 scalars) = 8 > 7: the escape goes whole, the ellipsis takes its place.
        XCTAssertEqual(PeerText.sanitized("ab\u{1b}c", maxLength: 7), "ab…")
        XCTAssertEqual(PeerText.sanitized("ab\u{1b}", maxLength: 8), "ab\\u{1b}")
        XCTAssertEqual(PeerText.sanitized("ab\u{1b}c", maxLength: 9), "ab\\u{1b}c")
        XCTAssertEqual(PeerText.sanitized("ab\u{1b}cd", maxLength: 9), "ab\\u{1b}…")
        var random = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let scalars = (0..<Int.random(in: 0...40, using: &random)).map { _ in
                Unicode.Scalar(UInt8.random(in: 0...0xFF, using: &random))
            }
            let text = String(String.UnicodeScalarView(scalars))
            let bound = Int.random(in: 1...30, using: &random)
            let out = PeerText.sanitized(text, maxLength: bound)
            XCTAssertLessThanOrEqual(out.unicodeScalars.count, bound, text.debugDescription)
            XCTAssertFalse(out.unicodeScalars.contains { PeerText.isControl($0) }, out.debugDescription)
            if out.hasSuffix("…") && !text.hasSuffix("…") {
                // What was kept is a prefix of the whole sanitised text.
                XCTAssertTrue(PeerText.sanitized(text, maxLength: 10_000).hasPrefix(String(out.dropLast())))
            } else {
                XCTAssertEqual(out, PeerText.sanitized(text, maxLength: 10_000))
            }
        }
    }
}
