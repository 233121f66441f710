import Foundation
import NIOCore
import PosternWire
import XCTest

/// docs/protocol.md §8: every test vector is what the encoder writes, byte for byte, and decodes back.
final class GoldenVectorTests: XCTestCase {
    func testEncoderWritesEveryVector() {
        for v in GoldenVectors.all {
            XCTAssertEqual(encode(v.frame).hex, v.bytes.hex, "§\(v.section) \(v.frame.name)")
        }
    }

    func testEveryVectorDecodesToItsFrame() throws {
        for v in GoldenVectors.all {
            XCTAssertEqual(try decodeOne(v.bytes), v.frame, "§\(v.section) \(v.frame.name)")
        }
    }

    func testAllVectorsInOneBufferDecodeInOrder() throws {
        let stream = GoldenVectors.all.flatMap(\.bytes)
        let (frames, left) = try decodeAll(stream)
        XCTAssertEqual(frames, GoldenVectors.all.map(\.frame))
        XCTAssertEqual(left, 0)
    }

    func testVectorsCoverEveryFrameType() {
        let covered = Set(GoldenVectors.all.map(\.frame.type))
        XCTAssertEqual(covered, Frame.knownTypes, "every frame type of §3 has a vector in §8")
    }

    /// The proofs in §8.3 and §8.4 are HMAC-SHA256 over the §4.2 layout, computed here independently.
    func testProofVectorsFollowSection4_2() {
        func message(_ label: String) -> [UInt8] {
            Array(label.utf8) + [0] + GoldenVectors.serverNonce + GoldenVectors.mediatorNonce + Array(GoldenVectors.name.utf8)
        }
        XCTAssertEqual(
            TestHMAC.hmacSHA256(key: GoldenVectors.secret, message: message("postern-v1 mediator proof")), GoldenVectors.mediatorProof)
        XCTAssertEqual(
            TestHMAC.hmacSHA256(key: GoldenVectors.secret, message: message("postern-v1 server proof")), GoldenVectors.serverProof)
        XCTAssertEqual(message("postern-v1 mediator proof").count, 25 + 1 + 32 + 32 + 4)
    }

    /// The HMAC used above is itself right (RFC 4231 test case 2, FIPS 180-2 "abc").
    func testHMACHelperMatchesPublishedVectors() {
        XCTAssertEqual(
            TestHMAC.sha256(Array("abc".utf8)).hex,
            [UInt8](hex: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").hex)
        XCTAssertEqual(
            TestHMAC.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)).hex,
            [UInt8](hex: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843").hex)
    }

    /// docs/protocol.md shows the same bytes as the literals here: each `### 8.N` heading is followed by
    /// a fenced block whose text before `|` on each line is the frame in hex.
    func testDocumentMatches() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/protocol.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let blocks = Self.vectorBlocks(in: text)
        XCTAssertEqual(Set(blocks.keys), Set(GoldenVectors.all.map(\.section)), "§8 headings in the doc")
        for v in GoldenVectors.all {
            guard let block = blocks[v.section] else { continue }
            XCTAssertEqual([UInt8](hex: block).hex, v.bytes.hex, "docs/protocol.md §\(v.section)")
        }
    }

    /// Section number → the fenced block after `### 8.N ...`.
    static func vectorBlocks(in text: String) -> [String: String] {
        var result: [String: String] = [:]
        var section: String?
        var inBlock = false
        var lines: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                if inBlock {
                    if let s = section { result[s] = lines.joined(separator: "\n") }
                    section = nil
                    lines = []
                }
                inBlock.toggle()
                continue
            }
            if inBlock {
                lines.append(line)
            } else if line.hasPrefix("### 8.") {
                section = line.dropFirst(4).split(separator: " ").first.map(String.init)
            } else if line.hasPrefix("## ") {
                section = nil
            }
        }
        return result
    }
}
