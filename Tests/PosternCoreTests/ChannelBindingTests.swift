import NIOCore
import PosternCore
import PosternWire
import XCTest

/// The proofs are bound to the server's TLS key as each end sees it (docs/protocol.md §4.2): a TLS
/// interceptor, which must show the mediator a key of its own, breaks the handshake even where the
/// mediator has pinned nothing yet.
final class ChannelBindingTests: XCTestCase {
    typealias F = Fixture
    private let serverKey = Array(repeating: UInt8(0xA5), count: 32)
    private let interceptorKey = Array(repeating: UInt8(0x5A), count: 32)

    func testSameKeyOnBothEndsEstablishes() throws {
        let link = F.link(serverBinding: serverKey)
        link.start()
        try link.pump()
        XCTAssertTrue(link.server.isEstablished)
        XCTAssertTrue(link.mediator.isEstablished)
    }

    func testInterceptorKeyIsRefusedByTheServerWithAReasonThatNamesIt() throws {
        let link = F.link(serverBinding: serverKey, mediatorBinding: interceptorKey)
        link.start()
        try link.pump()
        XCTAssertFalse(link.server.isEstablished)
        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.authenticationFailed])
        let end = try XCTUnwrap(link.mediatorLog.closes.first)
        XCTAssertEqual(end.code, .authenticationFailed)
        XCTAssertTrue(end.byPeer)
        XCTAssertTrue(end.message.contains("TLS interceptor"), end.message)
    }

    func testPlainMediatorAgainstBoundServerIsRefused() throws {
        // A mediator that saw no key (plain TCP) cannot authenticate to a server bound to one.
        let link = F.link(serverBinding: serverKey, mediatorBinding: [])
        link.start()
        try link.pump()
        XCTAssertFalse(link.server.isEstablished)
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.authenticationFailed])
    }

    func testServerProofFromAnotherBindingIsRejectedByTheMediator() throws {
        // An interceptor that somehow got the mediator's proof accepted still cannot produce the
        // server's proof for the key the mediator saw: simulate by binding only the server's proof.
        let link = F.link(serverBinding: serverKey)
        link.alterToMediator = { frame in
            guard case .welcome(var w) = frame else { return frame }
            w.proof = Proof.compute(
                role: .server, secret: F.secret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce,
                binding: self.interceptorKey, name: "acme")
            return .welcome(w)
        }
        link.start()
        try link.pump()
        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.authenticationFailed])
    }

    func testBindingChangesBothProofsAndEmptyBindingKeepsThePlainProof() {
        let plain = Proof.compute(
            role: .mediator, secret: F.secret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce, name: "acme")
        let explicitEmpty = Proof.compute(
            role: .mediator, secret: F.secret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce, binding: [],
            name: "acme")
        let bound = Proof.compute(
            role: .mediator, secret: F.secret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce,
            binding: serverKey, name: "acme")
        let other = Proof.compute(
            role: .mediator, secret: F.secret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce,
            binding: interceptorKey, name: "acme")
        XCTAssertEqual(plain, explicitEmpty)
        XCTAssertNotEqual(plain, bound)
        XCTAssertNotEqual(bound, other)
    }
}
