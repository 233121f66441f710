import NIOCore
import PosternWire
import XCTest

/// HELLO, CHALLENGE, AUTHENTICATE, WELCOME, REFUSED, PING, PONG, GOAWAY (docs/protocol.md §4).
final class SessionFrameTests: XCTestCase {
    let nonce = (0..<32).map { UInt8($0 * 7 & 0xff) }
    let longest = String(repeating: "x", count: Int(UInt16.max))

    func testHelloRoundTrips() {
        assertRoundTrip(.hello(.init(name: "acme", softwareVersion: "0.1.0", nonce: nonce, initialWindow: 4 << 20, maxPayload: 1 << 20)))
        assertRoundTrip(.hello(.init(version: 0, name: "", softwareVersion: "", nonce: nonce, initialWindow: 0, maxPayload: 0)))
        assertRoundTrip(
            .hello(.init(version: .max, name: longest, softwareVersion: longest, nonce: nonce, initialWindow: .max, maxPayload: .max)))
        assertRoundTrip(.hello(.init(name: "médiateur-東京", softwareVersion: "0.1.0 🚀", nonce: nonce, initialWindow: 1, maxPayload: 1024)))
    }

    func testHelloStartsWithMagicAndVersion() {
        let p = payload(of: .hello(.init(name: "a", softwareVersion: "b", nonce: nonce, initialWindow: 1, maxPayload: 2)))
        XCTAssertEqual(Array(p.prefix(6)), Array("PSTN".utf8) + [0x00, 0x01])
        XCTAssertEqual(Frame.magic, [0x50, 0x53, 0x54, 0x4e])
        XCTAssertEqual(Frame.protocolVersion, 1)
    }

    func testHelloWithBadMagicIsRejected() {
        var p = payload(of: GoldenVectors.all[0].frame)
        for i in 0..<4 {
            var bad = p
            bad[i] ^= 0x20
            assertDecodeThrows(rawFrame(type: 0x01, payload: bad), .badMagic)
        }
        // Magic is checked before anything else is read.
        p = Array("HTTP".utf8)
        assertDecodeThrows(rawFrame(type: 0x01, payload: p), .badMagic)
        assertDecodeThrows(rawFrame(type: 0x01, payload: Array("PST".utf8)), .truncated(frame: "HELLO"))
    }

    /// The encoder keeps nonces and proofs at 32 bytes: shorter ones are zero-padded, longer ones cut.
    func testNoncesAreAlways32Bytes() throws {
        let short = try decodeOne(encode(.challenge(.init(nonce: [1, 2, 3]))))
        XCTAssertEqual(short, .challenge(.init(nonce: [1, 2, 3] + [UInt8](repeating: 0, count: 29))))
        let long = try decodeOne(encode(.authenticate(.init(proof: [UInt8](repeating: 9, count: 40)))))
        XCTAssertEqual(long, .authenticate(.init(proof: [UInt8](repeating: 9, count: 32))))
        XCTAssertEqual(encode(.authenticate(.init(proof: []))).count, 6 + 32)
    }

    func testChallengeAuthenticateWelcomeRoundTrip() {
        assertRoundTrip(.challenge(.init(nonce: nonce)))
        assertRoundTrip(.challenge(.init(version: 0xbeef, nonce: nonce)))
        assertRoundTrip(.authenticate(.init(proof: nonce)))
        assertRoundTrip(.authenticate(.init(proof: [UInt8](repeating: 0, count: 32))))
        assertRoundTrip(
            .welcome(
                .init(
                    sessionID: 1, proof: nonce, keepaliveIntervalMillis: 10_000, deadTimeoutMillis: 30_000, initialWindow: 4 << 20,
                    maxPayload: 1 << 20)))
        assertRoundTrip(
            .welcome(
                .init(
                    sessionID: .max, proof: nonce, keepaliveIntervalMillis: .max, deadTimeoutMillis: .max, initialWindow: .max,
                    maxPayload: .max)))
        assertRoundTrip(
            .welcome(.init(sessionID: 0, proof: nonce, keepaliveIntervalMillis: 0, deadTimeoutMillis: 0, initialWindow: 0, maxPayload: 0)))
    }

    func testFixedSizes() {
        XCTAssertEqual(payload(of: .challenge(.init(nonce: nonce))).count, 34)
        XCTAssertEqual(payload(of: .authenticate(.init(proof: nonce))).count, 32)
        XCTAssertEqual(
            payload(
                of: .welcome(
                    .init(sessionID: 1, proof: nonce, keepaliveIntervalMillis: 1, deadTimeoutMillis: 1, initialWindow: 1, maxPayload: 1))
            )
            .count, 56)
        XCTAssertEqual(payload(of: .ping(.init(token: 1))).count, 8)
    }

    func testRefusedAndGoAwayRoundTripEveryCode() {
        for raw in UInt16(0)...30 {
            assertRoundTrip(.refused(.init(code: ErrorCode(rawValue: raw), message: "because \(raw)")))
            assertRoundTrip(.goAway(.init(code: ErrorCode(rawValue: raw), message: "")))
        }
        assertRoundTrip(.refused(.init(code: .unknown(.max), message: longest)))
        assertRoundTrip(.goAway(.init(code: .replaced, message: "replaced by a newer session of the same mediator")))
    }

    func testPingAndPongRoundTripAndDiffer() {
        for token: UInt64 in [0, 1, 0x0102_0304_0506_0708, .max] {
            assertRoundTrip(.ping(.init(token: token)))
            assertRoundTrip(.pong(.init(token: token)))
        }
        XCTAssertEqual(Array(encode(.ping(.init(token: 0x0102_0304_0506_0708))).suffix(8)), [1, 2, 3, 4, 5, 6, 7, 8], "big-endian")
        XCTAssertNotEqual(encode(.ping(.init(token: 5))), encode(.pong(.init(token: 5))))
    }

    func testHandshakeFieldsTruncated() {
        assertDecodeThrows(rawFrame(type: 0x02, payload: [0, 1] + [UInt8](repeating: 0, count: 31)), .truncated(frame: "CHALLENGE"))
        assertDecodeThrows(rawFrame(type: 0x03, payload: [UInt8](repeating: 0, count: 31)), .truncated(frame: "AUTHENTICATE"))
        assertDecodeThrows(rawFrame(type: 0x04, payload: [UInt8](repeating: 0, count: 55)), .truncated(frame: "WELCOME"))
        assertDecodeThrows(rawFrame(type: 0x07, payload: [UInt8](repeating: 0, count: 7)), .truncated(frame: "PING"))
        assertDecodeThrows(rawFrame(type: 0x08, payload: []), .truncated(frame: "PONG"))
        // A message whose length says more than the payload holds.
        assertDecodeThrows(rawFrame(type: 0x05, payload: [0, 1, 0, 5, 0x61, 0x62]), .truncated(frame: "REFUSED"))
        assertDecodeThrows(rawFrame(type: 0x09, payload: [0, 1, 0]), .truncated(frame: "GOAWAY"))
    }

    func testHandshakeFramesRejectTrailingBytes() {
        assertDecodeThrows(rawFrame(type: 0x07, payload: [UInt8](repeating: 0, count: 9)), .trailingBytes(frame: "PING", count: 1))
        assertDecodeThrows(rawFrame(type: 0x03, payload: [UInt8](repeating: 0, count: 40)), .trailingBytes(frame: "AUTHENTICATE", count: 8))
        assertDecodeThrows(rawFrame(type: 0x09, payload: [0, 1, 0, 1, 0x61, 0x62]), .trailingBytes(frame: "GOAWAY", count: 1))
    }
}
