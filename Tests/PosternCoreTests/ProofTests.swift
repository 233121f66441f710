import PosternCore
import XCTest

/// The challenge-response proofs of docs/protocol.md §4.2.
final class ProofTests: XCTestCase {
    let secret = Array("correct horse battery staple".utf8)
    let serverNonce: [UInt8] = (0..<32).map { UInt8($0) }
    let mediatorNonce: [UInt8] = (0..<32).map { UInt8(0x80 + $0) }

    private func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    private func proof(_ role: Proof.Role, secret: [UInt8]? = nil, name: String = "acme") -> [UInt8] {
        Proof.compute(
            role: role, secret: secret ?? self.secret, serverNonce: serverNonce, mediatorNonce: mediatorNonce, name: name)
    }

    /// Computed independently with Python:
    /// `hmac.new(b"correct horse battery staple", b"postern-v1 mediator proof" + b"\0" + bytes(range(32))
    ///  + bytes(range(0x80, 0xa0)) + b"acme", hashlib.sha256).hexdigest()`
    func testKnownVectors() {
        XCTAssertEqual(
            hex(proof(.mediator)), "603e52d1cbc5d4f2a3924aa918ce8e83d8b60ac064b5b7a8a3b59aae2797baf8")
        XCTAssertEqual(
            hex(proof(.server)), "10c4b686bd85ac467880c09bf47a09a9e765ad2496708996ddccf886b5439c17")
    }

    /// The channel-bound example of docs/protocol.md §4.2 (its nonces, not this file's): server nonce
    /// a0..bf, mediator nonce 00..1f, server key fingerprint c0..df; computed with Python's hmac.
    func testChannelBoundVectorsOfTheProtocolDocument() {
        let serverNonce: [UInt8] = (0xa0..<0xc0).map { UInt8($0) }
        let mediatorNonce: [UInt8] = (0..<32).map { UInt8($0) }
        let binding: [UInt8] = (0xc0..<0xe0).map { UInt8($0) }
        func bound(_ role: Proof.Role, _ binding: [UInt8]) -> String {
            hex(
                Proof.compute(
                    role: role, secret: secret, serverNonce: serverNonce, mediatorNonce: mediatorNonce, binding: binding, name: "acme"))
        }
        XCTAssertEqual(bound(.mediator, []), "ec5aaf2fd20270d9c2383d54181f8d7915c66b789ecfa72150d80de0422e910b")
        XCTAssertEqual(bound(.server, []), "73a095ebb7ecdf7428ca580bf4f28a955af527f4c3138984397bbad54c26fe3c")
        XCTAssertEqual(bound(.mediator, binding), "bacc474cb3d4c9facdb83f6094d9881306e6d1aacc5f4b7041cc114be04a6947")
        XCTAssertEqual(bound(.server, binding), "7276da581d0d32780f02c9106d2fb61f8a2b528efea4a332de157f9757061632")
    }

    func testRoleLabelsAreFixed() {
        XCTAssertEqual(Proof.Role.mediator.rawValue, "postern-v1 mediator proof")
        XCTAssertEqual(Proof.Role.server.rawValue, "postern-v1 server proof")
    }

    func testProofsAre32Bytes() {
        XCTAssertEqual(proof(.mediator).count, 32)
        XCTAssertEqual(proof(.server, secret: []).count, 32)
    }

    func testRolesAreSeparated() {
        // A server cannot reflect the mediator's proof back as its own.
        XCTAssertNotEqual(proof(.mediator), proof(.server))
    }

    func testEveryInputChangesTheProof() {
        let base = proof(.mediator)
        XCTAssertEqual(proof(.mediator), base, "deterministic")
        XCTAssertNotEqual(proof(.mediator, secret: Array("correct horse battery staplf".utf8)), base)
        XCTAssertNotEqual(proof(.mediator, name: "acmf"), base)
        XCTAssertNotEqual(
            Proof.compute(role: .mediator, secret: secret, serverNonce: mediatorNonce, mediatorNonce: serverNonce, name: "acme"),
            base, "nonces are not interchangeable")
        var otherNonce = serverNonce
        otherNonce[31] ^= 1
        XCTAssertNotEqual(
            Proof.compute(role: .mediator, secret: secret, serverNonce: otherNonce, mediatorNonce: mediatorNonce, name: "acme"),
            base, "a replayed proof fails against a fresh server nonce")
    }

    func testConstantTimeEqual() {
        let a = proof(.mediator)
        XCTAssertTrue(Proof.constantTimeEqual(a, a))
        XCTAssertTrue(Proof.constantTimeEqual([], []))
        for i in [0, 15, 31] {
            var b = a
            b[i] ^= 0x80
            XCTAssertFalse(Proof.constantTimeEqual(a, b), "differs at \(i)")
        }
        XCTAssertFalse(Proof.constantTimeEqual(a, Array(a.dropLast())), "shorter")
        XCTAssertFalse(Proof.constantTimeEqual(a, a + [0]), "longer")
        XCTAssertFalse(Proof.constantTimeEqual(a, []))
    }

    func testNoncesAreFreshAnd32Bytes() {
        let a = Nonce.make()
        let b = Nonce.make()
        XCTAssertEqual(a.count, 32)
        XCTAssertEqual(b.count, 32)
        XCTAssertNotEqual(a, b)
    }
}
