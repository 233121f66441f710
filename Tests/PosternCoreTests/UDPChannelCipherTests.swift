import Crypto
import Foundation
import NIOCore
import PosternCore
import PosternWire
import XCTest

/// Sealing and opening UDP channel datagrams (docs/protocol.md §9.4) under the session keys of §4.5.
final class UDPChannelCipherTests: XCTestCase {
    typealias F = Fixture

    /// The plain-TCP keys of the §4.5 worked example (SessionKeysTests derives them).
    static let serverToMediator = hexBytes("7336a355e5b0e260dc5a923fd5d157aac165a77cdd497038733c3a72574221a3")
    static let mediatorToServer = hexBytes("0d83a88f1194c7207c440006c8f4b6e1762cf912c06fe362b0ea66e461e76624")
    private let server = UDPChannelCipher(
        keys: SessionKeys(sending: serverToMediator, receiving: mediatorToServer), sessionID: 0x0123_4567_89ab_cdef)
    private let mediator = UDPChannelCipher(
        keys: SessionKeys(sending: mediatorToServer, receiving: serverToMediator), sessionID: 0x0123_4567_89ab_cdef)

    /// The vectors of §9.11: the §4.5 plain-TCP keys, session id 0x0123456789abcdef. The sealed bytes
    /// were computed apart from swift-crypto (Python's `cryptography`, ChaCha20Poly1305 of RFC 8439).
    static let vectors: [(section: String, fromServer: Bool, channel: UInt16, counter: UInt64, message: UDPChannelMessage, hex: String)] = [
        (
            "9.11.1", false, 0, 0, .ping(timestamp: 1_000_000_000, receiving: false),
            "010000000123456789abcdef00000000000000001c0517cde5a5e8c3e3f31a6ac5b88528520d926c4fbb9923d912"
        ),
        (
            "9.11.2", true, 0, 0, .pong(echo: 1_000_000_000),
            "010000000123456789abcdef0000000000000000323dd1513eb055d288c3fdcf137125166c9406d56e3f20468f"
        ),
        (
            "9.11.3", false, 0, 1,
            .datagram(portID: 3, peer: Endpoint(parsing: "192.168.77.53:53")!, bytes: ByteBuffer(bytes: [0xde, 0xad, 0xbe, 0xef])),
            "010000000123456789abcdef000000000000000153d1d52ca37e8612bf3b029967770b577ce5777c47f96d64a90d59b0e928bd08"
        ),
        (
            "9.11.4", true, 1, 7, .packet(ByteBuffer(bytes: hexBytes("450000140000400040110000c0a84d0ac0a84d35"))),
            "010000010123456789abcdef000000000000000798820ad3e575a2d61f1931e7fdffed05742f3610286281c582aecac50374da8891ccf8ec6f"
        ),
    ]

    private func open(_ cipher: UDPChannelCipher, _ datagram: ByteBuffer) -> UDPChannelMessage? {
        var reader = datagram
        guard let header = try? reader.readUDPChannelHeader(), var plain = cipher.open(datagram, header: header) else { return nil }
        return try? plain.readUDPChannelMessage()
    }

    func testGoldenVectors() throws {
        for v in Self.vectors {
            let (sender, receiver) = v.fromServer ? (server, mediator) : (mediator, server)
            let sealed = try XCTUnwrap(sender.seal(v.message, channelID: v.channel, counter: v.counter))
            XCTAssertEqual(hex(sealed.readableByteArray), v.hex, "§\(v.section)")
            XCTAssertEqual(open(receiver, ByteBuffer(bytes: hexBytes(v.hex))), v.message, "§\(v.section) opens")
            XCTAssertNil(open(sender, sealed), "§\(v.section) opens under the sender's own receiving key")
        }
    }

    /// docs/protocol.md §9.11 shows the same bytes: each `#### 9.11.N` heading is followed by a fenced
    /// block whose text before `|` on each line is the datagram in hex.
    func testDocumentShowsTheVectors() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/protocol.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        var blocks: [String: String] = [:]
        var section: String?
        var inBlock = false
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                if inBlock, let s = section { blocks[s] = lines.joined(separator: "\n") }
                if inBlock { section = nil }
                lines = []
                inBlock.toggle()
            } else if inBlock {
                lines.append(String(line))
            } else if line.hasPrefix("#### 9.11.") {
                section = line.dropFirst(5).split(separator: " ").first.map(String.init)
            } else if line.hasPrefix("#") {
                section = nil
            }
        }
        XCTAssertEqual(Set(blocks.keys), Set(Self.vectors.map(\.section)), "§9.11 vector headings")
        for v in Self.vectors {
            XCTAssertEqual(hex(hexBytes(blocks[v.section] ?? "")), v.hex, "docs/protocol.md §\(v.section)")
        }
        XCTAssertTrue(text.contains("## 9. UDP channel"), "docs/protocol.md has no §9")
    }

    /// Any one bit flipped anywhere, header or ciphertext or tag, and the datagram does not open.
    func testEveryBitFlipIsRejected() throws {
        for v in Self.vectors {
            let bytes = hexBytes(v.hex)
            let receiver = v.fromServer ? mediator : server
            for i in 0..<bytes.count * 8 {
                var flipped = bytes
                flipped[i / 8] ^= UInt8(1) << UInt8(i % 8)
                XCTAssertNil(open(receiver, ByteBuffer(bytes: flipped)), "§\(v.section) bit \(i)")
            }
        }
    }

    func testEveryTruncationIsRejected() throws {
        for v in Self.vectors {
            let bytes = hexBytes(v.hex)
            let receiver = v.fromServer ? mediator : server
            for n in 0..<bytes.count {
                XCTAssertNil(open(receiver, ByteBuffer(bytes: Array(bytes.prefix(n)))), "§\(v.section) cut to \(n)")
                XCTAssertNil(open(receiver, ByteBuffer(bytes: Array(bytes.suffix(n)))), "§\(v.section) last \(n)")
            }
        }
    }

    /// The header is authenticated: a datagram moved to another counter, channel or session, or sealed
    /// for another session or the other direction, does not open.
    func testHeaderAndKeysAreBound() throws {
        let message = UDPChannelMessage.pong(echo: 42)
        let sealed = try XCTUnwrap(mediator.seal(message, channelID: 2, counter: 5))
        XCTAssertEqual(open(server, sealed), message)
        for (offset, value) in [(3, UInt8(3)), (19, UInt8(6)), (11, UInt8(0xee))] {
            var moved = sealed.readableByteArray
            moved[offset] = value
            XCTAssertNil(open(server, ByteBuffer(bytes: moved)), "header byte \(offset) changed")
        }
        let otherSession = UDPChannelCipher(keys: F.keys(.server, sessionID: F.sessionID + 1), sessionID: F.sessionID)
        XCTAssertNotNil(
            open(
                UDPChannelCipher(keys: F.keys(.server), sessionID: F.sessionID),
                try XCTUnwrap(
                    UDPChannelCipher(keys: F.keys(.mediator), sessionID: F.sessionID).seal(message, channelID: 2, counter: 5))))
        XCTAssertNil(open(otherSession, sealed), "opened under another session's keys")
        XCTAssertNil(open(mediator, sealed), "opened by its own sender: the direction keys are swapped")
        let serverSealed = try XCTUnwrap(server.seal(message, channelID: 2, counter: 5))
        XCTAssertNotEqual(serverSealed.readableByteArray.suffix(25), sealed.readableByteArray.suffix(25), "directions share a key")
    }

    func testSizeLimit() throws {
        let peer = Endpoint(parsing: "10.0.0.1:53")!
        let fits = UDPChannelMessage.maxDatagramBytes(for: peer)
        let largest = try XCTUnwrap(
            mediator.seal(.datagram(portID: 1, peer: peer, bytes: ByteBuffer(repeating: 1, count: fits)), channelID: 0, counter: 0))
        XCTAssertEqual(largest.readableBytes, UDPChannelHeader.maxDatagramSize)
        XCTAssertNotNil(open(server, largest))
        XCTAssertNil(
            mediator.seal(.datagram(portID: 1, peer: peer, bytes: ByteBuffer(repeating: 1, count: fits + 1)), channelID: 0, counter: 0))
    }

    /// The cipher calls BoringSSL's AEAD in place; swift-crypto's `ChaChaPoly` (the same algorithm
    /// behind another API) must agree on every byte, for messages of every size class, and open what
    /// the other sealed.
    func testAgreesWithSwiftCryptosChaChaPoly() throws {
        var rng = SystemRandomNumberGenerator()
        let key = SymmetricKey(data: Self.mediatorToServer)
        for size in [0, 1, 15, 16, 17, 63, 64, 65, 255, 1_359, 1_399, 8_000, 65_000] {
            let packet = ByteBuffer(bytes: (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) })
            let counter = UInt64.random(in: 0..<(1 << 40), using: &rng)
            let channel = UInt16.random(in: 0...UInt16.max, using: &rng)
            let sealed = try XCTUnwrap(mediator.seal(.packet(packet), channelID: channel, counter: counter))
            let bytes = sealed.readableByteArray
            let nonce =
                [0, 0, UInt8(channel >> 8), UInt8(channel & 0xff)] + (0..<8).map { UInt8(truncatingIfNeeded: counter >> (56 - 8 * $0)) }
            let plaintext = [UDPChannelMessage.packetType] + packet.readableByteArray
            let box = try ChaChaPoly.seal(
                plaintext, using: key, nonce: try ChaChaPoly.Nonce(data: nonce),
                authenticating: Array(bytes.prefix(UDPChannelHeader.length)))
            XCTAssertEqual(Array(bytes.dropFirst(UDPChannelHeader.length)), Array(box.ciphertext) + Array(box.tag), "size \(size)")
            XCTAssertEqual(open(server, sealed), .packet(packet), "size \(size)")
        }
    }

    /// A received datagram is a slice of a whole batch's receive buffer, at any offset: it opens from
    /// its reader index, and the plaintext is a buffer of its own that does not keep the batch alive.
    func testADatagramInsideALargerBufferOpensIntoItsOwnBuffer() throws {
        let sealed = try XCTUnwrap(mediator.seal(.packet(ByteBuffer(repeating: 7, count: 1_400)), channelID: 1, counter: 9))
        var batch = ByteBuffer(repeating: 0xaa, count: 333)
        batch.writeImmutableBuffer(sealed)
        batch.writeRepeatingByte(0xbb, count: 500)
        let datagram = try XCTUnwrap(batch.getSlice(at: 333, length: sealed.readableBytes))
        var reader = datagram
        let header = try reader.readUDPChannelHeader()
        let plain = try XCTUnwrap(server.open(datagram, header: header))
        XCTAssertEqual(plain.readableBytes, 1 + 1_400)
        batch.withUnsafeReadableBytes { b in
            plain.withUnsafeReadableBytes { p in
                let inBatch = b.baseAddress! <= p.baseAddress! && p.baseAddress! < b.baseAddress! + b.count
                XCTAssertFalse(inBatch, "the plaintext lives in the receive buffer")
            }
        }
        XCTAssertNil(server.open(datagram, header: UDPChannelHeader(channelID: 1, sessionID: F.sessionID, counter: 10)), "another counter")
    }

    func testCounterNeverRepeatsAndStopsBeforeTheTop() {
        var counter = UDPChannelCounter()
        XCTAssertEqual((0..<5).compactMap { _ in counter.take() }, [0, 1, 2, 3, 4])
        var top = UDPChannelCounter(next: .max - 2)
        XCTAssertEqual(top.take(), .max - 2)
        XCTAssertEqual(top.take(), .max - 1)
        XCTAssertTrue(top.isExhausted)
        XCTAssertNil(top.take(), "2^64 - 1 is never used")
        XCTAssertNil(top.take())
    }
}

func hexBytes(_ text: String) -> [UInt8] {
    var out: [UInt8] = []
    for line in text.split(separator: "\n") {
        let data = line.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var digits = data.filter { !$0.isWhitespace }.makeIterator()
        while let hi = digits.next(), let lo = digits.next() { out.append(UInt8(String([hi, lo]), radix: 16)!) }
    }
    return out
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

extension ByteBuffer {
    var readableByteArray: [UInt8] { getBytes(at: readerIndex, length: readableBytes) ?? [] }
}
