import NIOCore
import PosternCore
import PosternWire
import XCTest

/// The transport's facts (`transportReady`) and decode failures (`decodeFailed`) as inputs of the
/// session machines: the mutual-TLS name check and the REFUSED-or-GOAWAY choice are theirs.
final class SessionTransportTests: XCTestCase {
    typealias F = Fixture

    // MARK: - Mutual TLS: the certificate's names

    func testACertificateThatNamesTheMediatorIsAccepted() throws {
        for names in [["acme"], ["other", "acme"]] {
            let link = F.link(peerCertificateNames: names, requiresClientCertificate: true)
            link.start()
            try link.pump()
            XCTAssertTrue(link.server.isEstablished, "names \(names)")
            XCTAssertTrue(link.mediator.isEstablished, "names \(names)")
        }
    }

    func testACertificateForAnotherNameIsRefusedBeforeTheSecretIsLookedUp() throws {
        let link = F.link(name: "acme", peerCertificateNames: ["camed"], requiresClientCertificate: true)
        link.start()
        try link.pump()
        XCTAssertFalse(link.server.isEstablished)
        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertEqual(link.secretLookups, [], "a certificate holder may not try secrets of names it does not carry")
        // REFUSED, never WELCOME: the layers above never see an established session.
        XCTAssertEqual(link.serverLog.sent.map(\.type), [Frame.Refused.type])
        XCTAssertEqual(link.serverLog.established, [])
        let message = "the TLS client certificate is for camed, not for mediator 'acme'"
        XCTAssertEqual(link.serverLog.closes, [SessionEnd(code: .authenticationFailed, message: message)])
        // The mediator hears the reason: it stops (authenticationFailed) and says why.
        XCTAssertEqual(link.mediatorLog.closes, [SessionEnd(code: .authenticationFailed, message: message, byPeer: true)])
    }

    func testACertificateWithoutNamesIsRefusedSayingSo() throws {
        let link = F.link(peerCertificateNames: [], requiresClientCertificate: true)
        link.start()
        try link.pump()
        XCTAssertEqual(
            link.serverLog.closes.map(\.message), ["the TLS client certificate is for no name, not for mediator 'acme'"])
    }

    func testAServerThatRequiresACertificateRefusesAMediatorWithout() throws {
        let link = F.link(peerCertificateNames: nil, requiresClientCertificate: true)
        link.start()
        try link.pump()
        XCTAssertFalse(link.server.isEstablished)
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.authenticationFailed])
        XCTAssertEqual(link.secretLookups, [])
    }

    func testWithoutMutualTLSNoCertificateIsNeeded() throws {
        let link = F.link(peerCertificateNames: nil, requiresClientCertificate: false)
        link.start()
        try link.pump()
        XCTAssertTrue(link.server.isEstablished)
    }

    // MARK: - Order of transport readiness

    func testAHandshakeFrameBeforeTheServersTransportIsReadyIsRefused() throws {
        let link = F.link(feedTransport: false)
        link.mediatorTransportReady(.plain)
        link.start()
        try link.pump()
        XCTAssertFalse(link.server.isEstablished)
        XCTAssertEqual(link.serverLog.closes, [SessionEnd(code: .protocolError, message: "HELLO arrived before the transport was ready")])
        XCTAssertEqual(link.secretLookups, [])
    }

    func testAChallengeBeforeTheMediatorsTransportIsReadyIsRefused() throws {
        let link = F.link(feedTransport: false)
        link.serverTransportReady(.plain)
        link.start()
        try link.pump()
        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertEqual(
            link.mediatorLog.closes, [SessionEnd(code: .protocolError, message: "CHALLENGE arrived before the transport was ready")])
        XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [true])
    }

    func testTheMediatorMaySayHelloBeforeItsTransportIsReady() throws {
        // TLS holds HELLO until its own handshake is done; the binding is needed only for CHALLENGE.
        let key = Array(repeating: UInt8(0xA5), count: 32)
        let link = F.link(feedTransport: false)
        link.serverTransportReady(TransportFacts(channelBinding: key))
        XCTAssertEqual(link.start().sent.map(\.type), [Frame.Hello.type])
        link.mediatorTransportReady(TransportFacts(channelBinding: key))
        try link.pump()
        XCTAssertTrue(link.server.isEstablished)
        XCTAssertTrue(link.mediator.isEstablished)
    }

    func testOnlyTheFirstTransportReadyCounts() throws {
        // A second report cannot swap the binding or the certificate names under the handshake.
        let key = Array(repeating: UInt8(0xA5), count: 32)
        let link = F.link(serverBinding: key, peerCertificateNames: ["camed"])
        XCTAssertEqual(link.serverTransportReady(TransportFacts(channelBinding: key, peerCertificateNames: ["acme"])), [])
        link.start()
        try link.pump()
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.authenticationFailed])
        XCTAssertFalse(link.server.isEstablished)

        let mediator = F.link(serverBinding: key)
        mediator.start()
        XCTAssertEqual(mediator.mediatorTransportReady(TransportFacts(channelBinding: [])), [])
        try mediator.pump()
        XCTAssertTrue(mediator.mediator.isEstablished, "the mediator proved with a binding other than the one it saw first")
    }

    // MARK: - Decode failures

    private let garbage = WireError.unknownType(0x7f)

    func testADecodeFailureBeforeAuthenticationIsRefused() throws {
        // At the server before HELLO, after HELLO, and at the mediator before WELCOME.
        let beforeHello = F.link()
        XCTAssertEqual(
            beforeHello.serverDecodeFailed(garbage),
            [
                .send(.refused(.init(code: .protocolError, message: garbage.description))),
                .close(SessionEnd(code: .protocolError, message: garbage.description)),
            ])
        XCTAssertNil(beforeHello.server.nextDeadline)

        let afterHello = F.link()
        afterHello.start()
        try afterHello.deliverToServer()
        XCTAssertEqual(afterHello.serverDecodeFailed(garbage).sent.map(\.type), [Frame.Refused.type])

        let mediator = F.link()
        mediator.start()
        let actions = mediator.mediatorDecodeFailed(.truncated(frame: "CHALLENGE"))
        XCTAssertEqual(actions.sent.map(\.type), [Frame.Refused.type])
        XCTAssertEqual(actions.closes.map(\.code), [.protocolError])
        XCTAssertEqual(actions.closes.map(\.message), ["CHALLENGE frame is truncated"])
        XCTAssertNil(mediator.mediator.nextDeadline)
    }

    func testADecodeFailureAfterAuthenticationIsGoAway() throws {
        let server = try F.establishedLink()
        XCTAssertEqual(
            server.serverDecodeFailed(garbage),
            [
                .send(.goAway(.init(code: .protocolError, message: garbage.description))),
                .close(SessionEnd(code: .protocolError, message: garbage.description)),
            ])
        XCTAssertFalse(server.server.isEstablished)
        try server.pump()
        XCTAssertEqual(server.mediatorLog.closes, [SessionEnd(code: .protocolError, message: garbage.description, byPeer: true)])

        let mediator = try F.establishedLink()
        XCTAssertEqual(mediator.mediatorDecodeFailed(garbage).sent.map(\.type), [Frame.GoAway.type])
        XCTAssertFalse(mediator.mediator.isEstablished)
    }

    func testADecodeFailureBeforeStartEndsTheSessionToo() {
        // Unreachable through the handlers (they start the machine before reading), and closed all the same.
        let link = F.link()
        XCTAssertEqual(link.mediatorDecodeFailed(garbage).closes.map(\.code), [.protocolError])
        XCTAssertEqual(link.start(), [], "a closed mediator never says HELLO")
        XCTAssertNil(link.mediator.nextDeadline)
    }

    func testADecodeFailureAfterCloseDoesNothing() throws {
        let link = try F.establishedLink()
        link.serverGoAway(.shuttingDown, "bye")
        try link.pump()
        XCTAssertEqual(link.serverDecodeFailed(garbage), [])
        XCTAssertEqual(link.mediatorDecodeFailed(garbage), [])
    }
}
