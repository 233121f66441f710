import NIOCore
import PosternCore
import PosternWire
import XCTest

/// The server and mediator session machines driven against each other over real frame bytes, with
/// no sockets and a clock the test moves (docs/protocol.md §4).
final class SessionStateMachineTests: XCTestCase {
    typealias F = Fixture

    // MARK: - Handshake

    func testHandshakeEstablishesBothSidesAndExchangesParameters() throws {
        let link = F.link()
        XCTAssertFalse(link.server.isEstablished)
        XCTAssertFalse(link.mediator.isEstablished)
        link.start()
        try link.pump()

        XCTAssertTrue(link.server.isEstablished)
        XCTAssertTrue(link.mediator.isEstablished)
        XCTAssertEqual(link.secretLookups, ["acme"])

        // Each side learns the other's window and payload limit, and the same session id.
        XCTAssertEqual(
            link.serverLog.established,
            [
                EstablishedSession(
                    name: "acme", sessionID: F.sessionID, peerInitialWindow: 256 << 10, peerMaxPayload: 32_768,
                    peerSoftwareVersion: "mediator-1.0", keys: F.keys(.server))
            ])
        XCTAssertEqual(
            link.mediatorLog.established,
            [
                EstablishedSession(
                    name: "acme", sessionID: F.sessionID, peerInitialWindow: 1 << 20, peerMaxPayload: 65_536,
                    peerSoftwareVersion: "", keys: F.keys(.mediator))
            ])
        XCTAssertEqual(link.serverLog.closes, [])
        XCTAssertEqual(link.mediatorLog.closes, [])
        XCTAssertEqual(link.serverLog.delivered, [])
        XCTAssertEqual(link.mediatorLog.delivered, [])
        XCTAssertEqual(link.mediatorLog.sent.map(\.type), [Frame.Hello.type, Frame.Authenticate.type])
        XCTAssertEqual(link.serverLog.sent.map(\.type), [Frame.Challenge.type, Frame.Welcome.type])
        // WELCOME comes before the server's `.established`, so the handler writes it first.
        guard case .send(.welcome) = link.serverLog[1], case .established = link.serverLog[2] else {
            return XCTFail("expected [send CHALLENGE, send WELCOME, established], got \(link.serverLog)")
        }
    }

    func testHandshakeFramesCarryTheAgreedFields() throws {
        let link = F.link()
        link.start()
        try link.pump()

        let expectedHello = Frame.Hello(
            version: Frame.protocolVersion, name: "acme", softwareVersion: "mediator-1.0", nonce: F.mediatorNonce,
            initialWindow: 256 << 10, maxPayload: 32_768)
        XCTAssertEqual(link.serverReceived.first, .hello(expectedHello))
        XCTAssertEqual(link.mediatorReceived.first, .challenge(.init(version: Frame.protocolVersion, nonce: F.serverNonce)))

        let mediatorProof = Proof.compute(
            role: .mediator, secret: F.secret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce, name: "acme")
        XCTAssertEqual(link.serverReceived.last, .authenticate(.init(proof: mediatorProof)))

        let serverProof = Proof.compute(
            role: .server, secret: F.secret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce, name: "acme")
        XCTAssertEqual(
            link.mediatorReceived.last,
            .welcome(
                .init(
                    sessionID: F.sessionID, proof: serverProof, keepaliveIntervalMillis: 10_000, deadTimeoutMillis: 30_000,
                    initialWindow: 1 << 20, maxPayload: 65_536)))
        // The secret itself never crosses the wire.
        for frame in link.serverReceived + link.mediatorReceived {
            var bytes = ByteBuffer()
            bytes.writeFrame(frame)
            XCTAssertFalse(Self.contains(bytes.readableBytesView, F.secret), "\(frame.name) carries the secret")
        }
    }

    func testHandshakeSurvivesBytesArrivingInSmallPieces() throws {
        for chunk in [1, 2, 5, 7, 13] {
            let link = F.link()
            link.chunkSize = chunk
            link.start()
            try link.pump()
            XCTAssertTrue(link.server.isEstablished, "chunk \(chunk)")
            XCTAssertTrue(link.mediator.isEstablished, "chunk \(chunk)")
            XCTAssertEqual(link.serverLog.established.first?.sessionID, F.sessionID)
            XCTAssertEqual(link.mediatorLog.established.first?.sessionID, F.sessionID)
        }
    }

    func testMediatorNameIsKnownOnceHelloArrived() throws {
        let link = F.link()
        XCTAssertNil(link.server.mediatorName)
        link.start()
        try link.deliverToServer()
        XCTAssertEqual(link.server.mediatorName, "acme")
    }

    func testMediatorSaysHelloOnlyOnce() {
        let link = F.link()
        XCTAssertEqual(link.start().sent.map(\.type), [Frame.Hello.type])
        XCTAssertEqual(link.start(), [])
    }

    // MARK: - Refusals

    func testWrongSecretIsRefusedWithAuthenticationFailed() throws {
        let link = F.link(mediatorSecret: F.otherSecret)
        link.start()
        try link.pump()

        XCTAssertFalse(link.server.isEstablished)
        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertEqual(link.serverLog.established, [])
        XCTAssertEqual(link.mediatorLog.established, [])
        // The server refuses the proof and closes; the mediator hears why.
        let refused = try XCTUnwrap(Self.refused(in: link.serverLog))
        XCTAssertEqual(refused.code, .authenticationFailed)
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.authenticationFailed])
        XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [false])
        XCTAssertEqual(
            link.mediatorLog.closes, [SessionEnd(code: .authenticationFailed, message: refused.message, byPeer: true)])
        // No WELCOME; no secret in the reason.
        XCTAssertFalse(link.serverLog.sent.contains { $0.type == Frame.Welcome.type })
        XCTAssertFalse(refused.message.contains("correct horse"))
        XCTAssertFalse(refused.message.contains("incorrect donkey"))
        XCTAssertNil(link.server.nextDeadline)
        XCTAssertNil(link.mediator.nextDeadline)
    }

    func testUnknownMediatorIsRefused() throws {
        let link = F.link(serverSecrets: { _ in nil })
        link.start()
        try link.pump()

        XCTAssertEqual(link.secretLookups, ["acme"])
        XCTAssertEqual(link.serverLog.sent.map(\.type), [Frame.Refused.type], "no CHALLENGE for an unknown name")
        XCTAssertEqual(link.mediatorLog.sent.map(\.type), [Frame.Hello.type], "no AUTHENTICATE after REFUSED")
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.unknownMediator])
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.unknownMediator])
        XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [true])
        XCTAssertTrue(try XCTUnwrap(link.mediatorLog.closes.first).message.contains("acme"))
    }

    func testMediatorRejectsAServerThatDoesNotKnowTheSecret() throws {
        // An impostor server accepts anyone but can only prove with a secret it does not have.
        let link = F.link()
        link.alterToMediator = { frame in
            guard case .welcome(var w) = frame else { return frame }
            w.proof = Proof.compute(
                role: .server, secret: F.otherSecret, serverNonce: F.serverNonce, mediatorNonce: F.mediatorNonce,
                name: "acme")
            return .welcome(w)
        }
        link.start()
        try link.pump()

        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertEqual(link.mediatorLog.established, [])
        let refused = try XCTUnwrap(Self.refused(in: link.mediatorLog))
        XCTAssertEqual(refused.code, .authenticationFailed)
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.authenticationFailed])
        XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [false])
        // The (real) server had already established and now hears the mediator refuse.
        XCTAssertEqual(link.serverLog.closes, [SessionEnd(code: .authenticationFailed, message: refused.message, byPeer: true)])
        XCTAssertFalse(link.server.isEstablished)
    }

    func testMediatorRejectsItsOwnProofReflectedBack() throws {
        // Reflection: the impostor answers with the proof the mediator just sent. Role labels differ.
        let link = F.link()
        var reflected: [UInt8] = []
        link.alterToServer = { frame in
            if case .authenticate(let a) = frame { reflected = a.proof }
            return frame
        }
        link.alterToMediator = { frame in
            guard case .welcome(var w) = frame else { return frame }
            w.proof = reflected
            return .welcome(w)
        }
        link.start()
        try link.pump()

        XCTAssertEqual(reflected.count, 32)
        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.authenticationFailed])
    }

    func testServerRefusesAnotherProtocolVersion() throws {
        let link = F.link()
        link.alterToServer = { frame in
            guard case .hello(var h) = frame else { return frame }
            h.version = Frame.protocolVersion + 1
            return .hello(h)
        }
        link.start()
        try link.pump()

        XCTAssertEqual(link.secretLookups, [], "no secret lookup for a peer we cannot talk to")
        XCTAssertEqual(link.serverLog.sent.map(\.type), [Frame.Refused.type])
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.versionMismatch])
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.versionMismatch])
        XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [true])
        XCTAssertTrue(try XCTUnwrap(link.mediatorLog.closes.first).message.contains("\(Frame.protocolVersion + 1)"))
    }

    func testMediatorRefusesAnotherProtocolVersion() throws {
        let link = F.link()
        link.alterToMediator = { frame in
            guard case .challenge(var c) = frame else { return frame }
            c.version = Frame.protocolVersion + 1
            return .challenge(c)
        }
        link.start()
        try link.pump()

        XCTAssertEqual(link.mediatorLog.sent.map(\.type), [Frame.Hello.type, Frame.Refused.type], "no AUTHENTICATE")
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.versionMismatch])
        XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [false])
        // The server logs the mediator's reason, and answers a REFUSED with nothing.
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.versionMismatch])
        XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [true])
        XCTAssertEqual(link.serverLog.sent.map(\.type), [Frame.Challenge.type])
        XCTAssertFalse(link.server.isEstablished)
    }

    func testServerRefusesInvalidNamesWithoutLookingThemUp() throws {
        for name in ["", "bad name", "a/b", "acme:1", "ümlaut", String(repeating: "a", count: 65)] {
            let link = F.link(name: name, serverSecrets: { _ in F.secret })
            link.start()
            try link.pump()
            XCTAssertEqual(link.secretLookups, [], "'\(name)'")
            XCTAssertEqual(link.serverLog.sent.map(\.type), [Frame.Refused.type], "'\(name)'")
            XCTAssertEqual(link.serverLog.closes.map(\.code), [.protocolError], "'\(name)'")
            XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.protocolError], "'\(name)'")
            XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [true], "'\(name)'")
        }
        // The longest valid name still works.
        let long = String(repeating: "a", count: 64)
        let link = F.link(name: long, serverSecrets: { _ in F.secret })
        link.start()
        try link.pump()
        XCTAssertTrue(link.server.isEstablished)
        XCTAssertEqual(link.mediatorLog.established.first?.name, long)
    }

    func testServerRefusesAHelloWithTooSmallWindowOrPayload() throws {
        var zeroWindow = F.mediatorSettings
        zeroWindow.initialWindow = 0
        var tinyPayload = F.mediatorSettings
        tinyPayload.maxPayload = 1023
        for settings in [zeroWindow, tinyPayload] {
            let link = F.link(mediatorSettings: settings)
            link.start()
            try link.pump()
            XCTAssertEqual(link.serverLog.closes.map(\.code), [.protocolError])
            XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.protocolError])
            XCTAssertFalse(link.server.isEstablished)
        }
        var smallest = F.mediatorSettings
        smallest.initialWindow = 1
        smallest.maxPayload = 1024
        let link = F.link(mediatorSettings: smallest)
        link.start()
        try link.pump()
        XCTAssertTrue(link.server.isEstablished)
        XCTAssertTrue(link.mediator.isEstablished)
    }

    func testMediatorRefusesAWelcomeWithZeroTimingOrWindow() throws {
        let edits: [(inout Frame.Welcome) -> Void] = [
            { $0.keepaliveIntervalMillis = 0 }, { $0.deadTimeoutMillis = 0 }, { $0.initialWindow = 0 },
            { $0.maxPayload = 1023 },
        ]
        for (i, edit) in edits.enumerated() {
            let link = F.link()
            link.alterToMediator = { frame in
                guard case .welcome(var w) = frame else { return frame }
                edit(&w)
                return .welcome(w)
            }
            link.start()
            try link.pump()
            XCTAssertFalse(link.mediator.isEstablished, "edit \(i)")
            XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.protocolError], "edit \(i)")
            XCTAssertEqual(link.serverLog.closes.map(\.code), [.protocolError], "edit \(i)")
            XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [true], "edit \(i)")
        }
    }

    // MARK: - Frames out of order

    func testServerRequiresHelloFirst() throws {
        let wrongFirst: [Frame] =
            [F.handshakeFrames[2], F.handshakeFrames[1], F.handshakeFrames[3]] + F.relayFrames + [
                .ping(.init(token: 1)), .pong(.init(token: 1)), .goAway(.init(code: .shuttingDown, message: "bye")),
            ]
        for frame in wrongFirst {
            let link = F.link()
            link.inject(toServer: frame)
            let actions = try XCTUnwrap(try link.deliverToServer())
            XCTAssertEqual(actions.sent.map(\.type), [Frame.Refused.type], frame.name)
            XCTAssertEqual(actions.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(actions.closes.map(\.byPeer), [false], frame.name)
            XCTAssertTrue(try XCTUnwrap(actions.closes.first).message.contains(frame.name), frame.name)
            XCTAssertEqual(link.secretLookups, [])
        }
    }

    func testServerRequiresAuthenticateAfterHello() throws {
        for frame in [F.handshakeFrames[0], F.handshakeFrames[1], F.handshakeFrames[3]] + F.relayFrames {
            let link = F.link()
            link.alterToServer = { if case .authenticate = $0 { return nil } else { return $0 } }
            link.start()
            try link.pump()
            XCTAssertEqual(link.server.mediatorName, "acme")
            link.inject(toServer: frame)
            try link.pump()
            XCTAssertEqual(link.serverLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.serverLog.sent.map(\.type), [Frame.Challenge.type, Frame.Refused.type], frame.name)
            XCTAssertEqual(link.serverLog.established, [], frame.name)
            XCTAssertEqual(link.serverLog.delivered, [], frame.name)
            // The mediator was waiting for WELCOME and hears the refusal.
            XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [true], frame.name)
        }
    }

    func testMediatorRequiresChallengeAfterHello() throws {
        for frame in [F.handshakeFrames[0], F.handshakeFrames[2], F.handshakeFrames[3]] + F.relayFrames {
            let link = F.link()
            link.alterToServer = { _ in nil }
            link.start()
            link.inject(toMediator: frame)
            let actions = try XCTUnwrap(try link.deliverToMediator())
            XCTAssertEqual(actions.sent.map(\.type), [Frame.Refused.type], frame.name)
            XCTAssertEqual(actions.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(actions.delivered, [], frame.name)
            XCTAssertFalse(link.mediator.isEstablished, frame.name)
        }
    }

    func testMediatorRequiresWelcomeAfterAuthenticate() throws {
        for frame in [F.handshakeFrames[0], F.handshakeFrames[1], F.handshakeFrames[2]] + F.relayFrames {
            let link = F.link()
            link.alterToMediator = { if case .welcome = $0 { return nil } else { return $0 } }
            link.start()
            try link.pump()
            XCTAssertTrue(link.server.isEstablished)
            link.inject(toMediator: frame)
            try link.pump()
            XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.mediatorLog.established, [], frame.name)
            XCTAssertEqual(link.mediatorLog.delivered, [], frame.name)
            XCTAssertEqual(link.serverLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [true], frame.name)
        }
    }

    func testHandshakeFramesAfterEstablishmentEndTheSession() throws {
        for frame in F.handshakeFrames {
            let link = try F.establishedLink()
            link.inject(toServer: frame)
            try link.pump()
            XCTAssertEqual(
                link.serverLog.sent.last,
                .goAway(.init(code: .protocolError, message: "unexpected \(frame.name) in an established session")))
            XCTAssertEqual(link.serverLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [false], frame.name)
            XCTAssertEqual(link.serverLog.delivered, [], frame.name)
            XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [true], frame.name)
            XCTAssertFalse(link.server.isEstablished)
            XCTAssertFalse(link.mediator.isEstablished)
        }
        for frame in F.handshakeFrames {
            let link = try F.establishedLink()
            link.inject(toMediator: frame)
            try link.pump()
            XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.mediatorLog.sent.last?.type, Frame.GoAway.type, frame.name)
            XCTAssertEqual(link.mediatorLog.delivered, [], frame.name)
            XCTAssertEqual(link.serverLog.closes.map(\.code), [.protocolError], frame.name)
            XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [true], frame.name)
        }
    }

    func testEstablishedSessionDeliversEveryOtherFrameUnchanged() throws {
        let link = try F.establishedLink()
        for frame in F.relayFrames {
            link.inject(toServer: frame)
            XCTAssertEqual(try link.deliverToServer(), [.deliver(frame)], frame.name)
            link.inject(toMediator: frame)
            XCTAssertEqual(try link.deliverToMediator(), [.deliver(frame)], frame.name)
        }
        XCTAssertTrue(link.server.isEstablished)
        XCTAssertTrue(link.mediator.isEstablished)
    }

    func testRefusedAfterEstablishmentClosesByPeer() throws {
        let link = try F.establishedLink()
        link.inject(toServer: .refused(.init(code: .internalError, message: "late refusal")))
        XCTAssertEqual(
            try link.deliverToServer(), [.close(SessionEnd(code: .internalError, message: "late refusal", byPeer: true))])
        XCTAssertFalse(link.server.isEstablished)
    }

    func testAPeersGoAwayAndRefusedMessagesEndSanitised() throws {
        // What the peer wrote reaches every log and event as SessionEnd.message: no escape sequence,
        // no newline that forges a log line, no unbounded length.
        let hostile = "bye\u{1b}[2J\nINFO mediator 'beta' connected" + String(repeating: "x", count: 1000)
        let link = try F.establishedLink()
        link.inject(toServer: .goAway(.init(code: .shuttingDown, message: hostile)))
        let end = try XCTUnwrap(try XCTUnwrap(try link.deliverToServer()).closes.first)
        XCTAssertTrue(end.byPeer)
        XCTAssertTrue(end.message.hasPrefix("bye\\u{1b}[2J\\u{a}INFO mediator 'beta' connected"), end.message)
        XCTAssertEqual(end.message.unicodeScalars.count, PeerText.defaultMaxLength)
        XCTAssertFalse(end.message.unicodeScalars.contains { $0.value < 0x20 })
        link.inject(toMediator: .refused(.init(code: .internalError, message: "late\u{202e}\r\n")))
        XCTAssertEqual(
            try link.deliverToMediator(),
            [.close(SessionEnd(code: .internalError, message: "late\\u{202e}\\u{d}\\u{a}", byPeer: true))])
    }

    // MARK: - Handshake timeouts

    func testServerTimesOutWaitingForHello() throws {
        let link = F.link()
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(10))
        link.now = F.t0 + .seconds(10) - .nanoseconds(1)
        XCTAssertEqual(link.tickServer(), [])
        link.now = F.t0 + .seconds(10)
        let actions = link.tickServer()
        XCTAssertEqual(actions.sent.map(\.type), [Frame.Refused.type])
        XCTAssertEqual(actions.closes.map(\.code), [.timedOut])
        XCTAssertNil(link.server.nextDeadline)
    }

    func testServerTimesOutWaitingForAuthenticate() throws {
        let link = F.link()
        link.alterToServer = { if case .authenticate = $0 { return nil } else { return $0 } }
        link.start()
        link.advance(by: .seconds(3))
        try link.pump()
        // The deadline counts from the connection, not from HELLO.
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(10))
        link.now = F.t0 + .seconds(10) - .milliseconds(1)
        XCTAssertEqual(link.tickServer(), [])
        link.now = F.t0 + .seconds(10)
        link.tickServer()
        try link.pump()
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.timedOut])
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.timedOut])
        XCTAssertEqual(link.mediatorLog.closes.map(\.byPeer), [true])
    }

    func testMediatorTimesOutWaitingForChallenge() throws {
        let link = F.link()
        link.alterToServer = { if case .hello = $0 { return nil } else { return $0 } }
        XCTAssertNil(link.mediator.nextDeadline, "no timer before the channel connects")
        XCTAssertEqual(link.tickMediator(), [])
        link.advance(by: .seconds(1))
        link.start()
        // The mediator's own handshake timeout (8 s), counted from start.
        XCTAssertEqual(link.mediator.nextDeadline, F.t0 + .seconds(9))
        link.now = F.t0 + .seconds(9) - .nanoseconds(1)
        XCTAssertEqual(link.tickMediator(), [])
        link.now = F.t0 + .seconds(9)
        let actions = link.tickMediator()
        XCTAssertEqual(actions.sent.map(\.type), [Frame.Refused.type])
        XCTAssertEqual(actions.closes.map(\.code), [.timedOut])
        XCTAssertEqual(actions.closes.map(\.byPeer), [false])
        XCTAssertNil(link.mediator.nextDeadline)
    }

    func testMediatorTimesOutWaitingForWelcome() throws {
        let link = F.link()
        link.alterToMediator = { if case .welcome = $0 { return nil } else { return $0 } }
        link.start()
        try link.pump()
        XCTAssertTrue(link.server.isEstablished)
        XCTAssertEqual(link.mediator.nextDeadline, F.t0 + .seconds(8))
        link.now = F.t0 + .seconds(8)
        link.tickMediator()
        try link.pump()
        XCTAssertEqual(link.mediatorLog.closes.map(\.code), [.timedOut])
        // The established server hears why.
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.timedOut])
        XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [true])
    }

    func testCompletedHandshakeDisarmsTheHandshakeTimer() throws {
        let link = try F.establishedLink()
        link.now = F.t0 + .seconds(10)
        // Only keepalive now: PING, not REFUSED.
        XCTAssertEqual(link.tickServer().sent.map(\.type), [Frame.Ping.pingType])
        XCTAssertEqual(link.tickMediator().sent.map(\.type), [Frame.Ping.pingType])
    }

    // MARK: - Keepalive

    func testKeepaliveRoundTripIsMeasuredOnBothEnds() throws {
        let link = try F.establishedLink()
        XCTAssertNil(link.server.keepaliveRoundTrip)
        link.now = F.t0 + .seconds(10)
        _ = link.tickServer()
        _ = link.tickMediator()
        // The PINGs reach the other end now; their PONGs come back 30 ms later.
        _ = try link.deliverToMediator()
        _ = try link.deliverToServer()
        link.advance(by: .milliseconds(30))
        try link.pump()
        XCTAssertEqual(link.server.keepaliveRoundTrip, .milliseconds(30))
        XCTAssertEqual(link.mediator.keepaliveRoundTrip, .milliseconds(30))
    }

    func testKeepalivePingsAreAnsweredAndKeepTheSessionAlive() throws {
        let link = try F.establishedLink()
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(10))
        // The mediator uses the server's interval from WELCOME, not its own 25 s.
        XCTAssertEqual(link.mediator.nextDeadline, F.t0 + .seconds(10))

        for round in 1...12 {  // 120 s: four times the dead timeout
            link.now = F.t0 + .seconds(Int64(10 * round))
            XCTAssertEqual(link.tickServer(), [.send(.ping(.init(token: UInt64(round))))], "round \(round)")
            XCTAssertEqual(link.tickMediator(), [.send(.ping(.init(token: UInt64(round))))], "round \(round)")
            let serverBefore = link.serverLog.count
            let mediatorBefore = link.mediatorLog.count
            try link.pump()
            // Each answered the other's PING with a PONG of the same token; nothing else happened.
            XCTAssertEqual(Array(link.serverLog[serverBefore...]), [.send(.pong(.init(token: UInt64(round))))])
            XCTAssertEqual(Array(link.mediatorLog[mediatorBefore...]), [.send(.pong(.init(token: UInt64(round))))])
            XCTAssertEqual(link.server.nextDeadline, link.now + .seconds(10))
            XCTAssertEqual(link.mediator.nextDeadline, link.now + .seconds(10))
        }
        XCTAssertEqual(link.serverLog.closes, [])
        XCTAssertEqual(link.mediatorLog.closes, [])
        XCTAssertEqual(link.serverLog.delivered, [], "PING and PONG stay inside the machine")
        XCTAssertTrue(link.server.isEstablished && link.mediator.isEstablished)
    }

    func testPingsGoOutEvenWhileDataFlows() throws {
        // Keepalive must refresh the NAT mapping in both directions whatever else is flowing.
        let link = try F.establishedLink()
        var pings = 0
        for second in 1...35 {
            link.now = F.t0 + .seconds(Int64(second))
            link.inject(toServer: F.relayFrames[8])
            link.inject(toMediator: F.relayFrames[8])
            pings += link.tickServer().pingTokens.count
            link.tickMediator()
            try link.pump()
        }
        XCTAssertEqual(pings, 3)
        XCTAssertEqual(link.mediatorLog.pingTokens, [1, 2, 3])
        XCTAssertEqual(link.serverLog.closes, [])
    }

    func testRunningTheClockKeepsAHealthySessionUpForAnHour() throws {
        let link = try F.establishedLink()
        try link.runClock(until: F.t0 + .seconds(3600))
        XCTAssertTrue(link.server.isEstablished && link.mediator.isEstablished)
        XCTAssertEqual(link.serverLog.pingTokens, Array(1...360))
        XCTAssertEqual(link.mediatorLog.pingTokens, Array(1...360))
    }

    func testServerDeclaresASilentMediatorDead() throws {
        let link = try F.establishedLink()
        link.alterToServer = { _ in nil }  // the mediator-to-server path broke
        try link.runClock(until: F.t0 + .seconds(30) - .nanoseconds(1))
        XCTAssertEqual(link.serverLog.pingTokens, [1, 2], "pinged at 10 s and 20 s")
        XCTAssertEqual(link.serverLog.closes, [])
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(30))

        link.now = F.t0 + .seconds(30)
        let actions = link.tickServer()
        let message = "peer silent for 30000 ms"
        XCTAssertEqual(
            actions,
            [
                .send(.goAway(.init(code: .keepaliveTimeout, message: message))),
                .close(SessionEnd(code: .keepaliveTimeout, message: message)),
            ])
        XCTAssertNil(link.server.nextDeadline)
        try link.pump()
        // The mediator still hears the server and learns why it ended.
        XCTAssertEqual(link.mediatorLog.closes, [SessionEnd(code: .keepaliveTimeout, message: message, byPeer: true)])
    }

    func testMediatorDeclaresASilentServerDead() throws {
        let link = try F.establishedLink()
        link.alterToMediator = { _ in nil }
        try link.runClock(until: F.t0 + .seconds(30) - .nanoseconds(1))
        XCTAssertEqual(link.mediatorLog.closes, [], "not before the server's 30 s dead timeout")
        link.now = F.t0 + .seconds(30)
        let actions = link.tickMediator()
        XCTAssertEqual(actions.sent.map(\.type), [Frame.GoAway.type])
        XCTAssertEqual(actions.closes.map(\.code), [.keepaliveTimeout])
        try link.pump()
        XCTAssertEqual(link.serverLog.closes.map(\.code), [.keepaliveTimeout])
        XCTAssertEqual(link.serverLog.closes.map(\.byPeer), [true])
    }

    func testADeadTimerFiresWhenTicksAreLate() throws {
        // An event loop that wakes late still sees the peer dead, and says for how long it was silent.
        let link = try F.establishedLink()
        link.now = F.t0 + .seconds(95)
        let actions = link.tickServer()
        XCTAssertEqual(actions.closes, [SessionEnd(code: .keepaliveTimeout, message: "peer silent for 95000 ms")])
    }

    func testAnyReceivedFrameResetsTheDeadTimer() throws {
        let frames = F.relayFrames + [.ping(.init(token: 99)), .pong(.init(token: 99))]
        for frame in frames {
            let link = try F.establishedLink()
            link.alterToServer = { _ in nil }  // only the injected frame reaches the server
            link.now = F.t0 + .seconds(10)
            link.tickServer()
            link.now = F.t0 + .seconds(20)
            link.tickServer()
            link.now = F.t0 + .seconds(25)
            link.inject(toServer: frame)
            try link.deliverToServer()
            for second in [30, 40, 50] {
                link.now = F.t0 + .seconds(Int64(second))
                XCTAssertEqual(link.tickServer().sent.map(\.type), [Frame.Ping.pingType], "\(frame.name) at \(second) s")
            }
            XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(55), frame.name)
            link.now = F.t0 + .seconds(55) - .nanoseconds(1)
            XCTAssertEqual(link.tickServer(), [], frame.name)
            link.now = F.t0 + .seconds(55)
            XCTAssertEqual(link.tickServer().closes.map(\.code), [.keepaliveTimeout], frame.name)
        }
    }

    func testMediatorDeadTimerIsResetByServerFrames() throws {
        let link = try F.establishedLink()
        link.alterToMediator = { _ in nil }
        link.now = F.t0 + .seconds(29)
        link.inject(toMediator: F.relayFrames[1])
        try link.deliverToMediator()
        link.now = F.t0 + .seconds(58)
        link.tickMediator()
        XCTAssertEqual(link.mediatorLog.closes, [])
        link.now = F.t0 + .seconds(59)
        XCTAssertEqual(link.tickMediator().closes.map(\.code), [.keepaliveTimeout])
    }

    func testNextDeadlineIsTheEarlierOfNextPingAndDeadDeadline() throws {
        var quickDeath = F.serverSettings
        quickDeath.keepaliveInterval = .seconds(10)
        quickDeath.deadTimeout = .seconds(15)
        let link = try F.establishedLink(serverSettings: quickDeath)
        link.alterToServer = { _ in nil }
        link.alterToMediator = { _ in nil }
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(10), "ping first")
        XCTAssertEqual(link.mediator.nextDeadline, F.t0 + .seconds(10))
        link.now = F.t0 + .seconds(10)
        link.tickServer()
        link.tickMediator()
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(15), "dead (15 s) before the next ping (20 s)")
        XCTAssertEqual(link.mediator.nextDeadline, F.t0 + .seconds(15))
        link.now = F.t0 + .seconds(14)
        link.inject(toServer: .pong(.init(token: 1)))
        try link.deliverToServer()
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(20), "heard at 14 s: dead at 29 s, ping at 20 s")
        link.now = F.t0 + .seconds(15)
        XCTAssertEqual(link.tickServer(), [])
        XCTAssertEqual(link.tickMediator().closes.map(\.code), [.keepaliveTimeout], "the mediator heard nothing")
        XCTAssertNil(link.mediator.nextDeadline)
        link.now = F.t0 + .seconds(20)
        XCTAssertEqual(link.tickServer().pingTokens, [2])
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(29), "dead (29 s) before the next ping (30 s)")
        link.now = F.t0 + .seconds(29)
        XCTAssertEqual(link.tickServer().closes.map(\.code), [.keepaliveTimeout])
    }

    // MARK: - Ending a session

    func testServiceGoAwayFromTheServer() throws {
        let link = try F.establishedLink()
        let actions = link.serverGoAway(.replaced, "a newer session of acme connected")
        XCTAssertEqual(
            actions,
            [
                .send(.goAway(.init(code: .replaced, message: "a newer session of acme connected"))),
                .close(SessionEnd(code: .replaced, message: "a newer session of acme connected")),
            ])
        XCTAssertFalse(link.server.isEstablished)
        XCTAssertNil(link.server.nextDeadline)
        try link.pump()
        XCTAssertEqual(
            link.mediatorLog.closes, [SessionEnd(code: .replaced, message: "a newer session of acme connected", byPeer: true)])
        XCTAssertFalse(link.mediator.isEstablished)
        XCTAssertNil(link.mediator.nextDeadline)
    }

    func testServiceGoAwayFromTheMediator() throws {
        let link = try F.establishedLink()
        let actions = link.mediatorGoAway(.shuttingDown, "mediator stopping")
        XCTAssertEqual(actions.sent, [.goAway(.init(code: .shuttingDown, message: "mediator stopping"))])
        XCTAssertEqual(actions.closes, [SessionEnd(code: .shuttingDown, message: "mediator stopping")])
        try link.pump()
        XCTAssertEqual(link.serverLog.closes, [SessionEnd(code: .shuttingDown, message: "mediator stopping", byPeer: true)])
    }

    func testServiceGoAwayDuringTheHandshakeRefuses() throws {
        let link = F.link()
        link.alterToServer = { if case .authenticate = $0 { return nil } else { return $0 } }
        link.start()
        try link.pump()
        let actions = link.serverGoAway(.shuttingDown, "server stopping")
        XCTAssertEqual(actions.sent, [.refused(.init(code: .shuttingDown, message: "server stopping"))])
        XCTAssertEqual(actions.closes.map(\.code), [.shuttingDown])
        try link.pump()
        XCTAssertEqual(link.mediatorLog.closes, [SessionEnd(code: .shuttingDown, message: "server stopping", byPeer: true)])

        let early = F.link()
        early.alterToServer = { _ in nil }
        early.start()
        XCTAssertEqual(early.mediatorGoAway(.shuttingDown, "stop").sent.map(\.type), [Frame.Refused.type])
        XCTAssertNil(early.mediator.nextDeadline)
    }

    func testMediatorGoAwayBeforeStartEndsItQuietly() {
        let link = F.link()
        XCTAssertEqual(link.mediatorGoAway(.shuttingDown, "stop"), [])
        XCTAssertEqual(link.start(), [], "a stopped machine never says HELLO")
        XCTAssertNil(link.mediator.nextDeadline)
    }

    func testNothingHappensAfterClose() throws {
        let everyFrame =
            F.handshakeFrames + F.relayFrames + [
                .ping(.init(token: 1)), .pong(.init(token: 1)), .goAway(.init(code: .shuttingDown, message: "x")),
                .refused(.init(code: .shuttingDown, message: "x")),
            ]
        // Closed by its own decision, by the peer, by a timeout, and by a refusal during the handshake.
        let endings: [(String, (SessionLink) throws -> Void)] = [
            (
                "server goAway",
                { link in
                    link.serverGoAway(.replaced, "r")
                    try link.pump()
                }
            ),
            (
                "mediator goAway",
                { link in
                    link.mediatorGoAway(.shuttingDown, "s")
                    try link.pump()
                }
            ),
            (
                "keepalive timeout",
                { link in
                    link.alterToServer = { _ in nil }
                    link.alterToMediator = { _ in nil }
                    try link.runClock(until: F.t0 + .seconds(31))
                }
            ),
        ]
        for (label, end) in endings {
            let link = try F.establishedLink()
            try end(link)
            XCTAssertEqual(link.serverLog.closes.count, 1, label)
            XCTAssertEqual(link.mediatorLog.closes.count, 1, label)
            try Self.assertInert(link, frames: everyFrame, label)
        }
        let refused = F.link(mediatorSecret: F.otherSecret)
        refused.start()
        try refused.pump()
        try Self.assertInert(refused, frames: everyFrame, "refused")
    }

    // MARK: - Random interleavings

    /// What must hold for one side whatever happens (docs/protocol.md §4).
    struct SideInvariants {
        let side: String
        var established: EstablishedSession?
        var closed = false
        var lastPing: UInt64 = 0

        mutating func check(_ actions: [SessionAction], event: String, isEstablished: Bool, nextDeadline: NIODeadline?) {
            if closed {
                XCTAssertEqual(actions, [], "\(side) acted after close on \(event)")
            }
            for (i, action) in actions.enumerated() {
                switch action {
                case .established(let e):
                    XCTAssertNil(established, "\(side) established twice on \(event)")
                    established = e
                case .close:
                    XCTAssertEqual(i, actions.count - 1, "\(side): close is not the last action on \(event)")
                    closed = true
                case .deliver:
                    XCTAssertNotNil(established, "\(side) delivered before establishment on \(event)")
                case .send(.ping(let p)):
                    XCTAssertNotNil(established, "\(side) pinged before establishment on \(event)")
                    XCTAssertGreaterThan(p.token, lastPing, "\(side): ping tokens must increase")
                    lastPing = p.token
                case .send:
                    break
                }
            }
            XCTAssertEqual(isEstablished, established != nil && !closed, "\(side) isEstablished on \(event)")
            if closed { XCTAssertNil(nextDeadline, "\(side) keeps a timer after close") }
        }
    }

    func testRandomInterleavingsKeepTheInvariants() throws {
        var rng = SeededGenerator(seed: 0x9057_e4)
        var bothEstablished = 0
        var keepaliveTimeouts = 0
        var handshakeTimeouts = 0
        var refusals = 0
        var delivered = 0
        for run in 0..<1000 {
            let wrongSecret = rng.next() % 8 == 0
            let link = F.link(mediatorSecret: wrongSecret ? F.otherSecret : F.secret)
            link.chunkSize = [1, 3, 64, .max][Int(rng.next() % 4)]
            var server = SideInvariants(side: "server (run \(run))")
            var mediator = SideInvariants(side: "mediator (run \(run))")
            func checkServer(_ a: [SessionAction], _ event: String) {
                server.check(a, event: event, isEstablished: link.server.isEstablished, nextDeadline: link.server.nextDeadline)
            }
            func checkMediator(_ a: [SessionAction], _ event: String) {
                mediator.check(
                    a, event: event, isEstablished: link.mediator.isEstablished, nextDeadline: link.mediator.nextDeadline)
            }
            checkMediator(link.start(), "start")

            for _ in 0..<60 {
                switch rng.next() % 20 {
                case 0..<5:
                    let wasEstablished = link.server.isEstablished
                    guard let actions = try link.deliverToServer(), let frame = link.serverReceived.last else { continue }
                    checkServer(actions, "receive \(frame.name)")
                    if wasEstablished, case .ping(let p) = frame { XCTAssertEqual(actions, [.send(.pong(p))]) }
                    if wasEstablished, frame.type >= Frame.Open.type {
                        XCTAssertEqual(actions, [.deliver(frame)])
                        delivered += 1
                    }
                case 5..<10:
                    let wasEstablished = link.mediator.isEstablished
                    guard let actions = try link.deliverToMediator(), let frame = link.mediatorReceived.last else { continue }
                    checkMediator(actions, "receive \(frame.name)")
                    if wasEstablished, case .ping(let p) = frame { XCTAssertEqual(actions, [.send(.pong(p))]) }
                    if wasEstablished, frame.type >= Frame.Open.type {
                        XCTAssertEqual(actions, [.deliver(frame)])
                        delivered += 1
                    }
                case 10..<13:
                    link.advance(by: .milliseconds(Int64(rng.next() % 12_000)))
                case 13..<15:
                    // Ticking is due exactly when the machine said: nothing before, something at or after.
                    let deadline = link.server.nextDeadline
                    let actions = link.tickServer()
                    checkServer(actions, "tick")
                    XCTAssertEqual(actions.isEmpty, deadline.map { link.now < $0 } ?? true, "server tick vs nextDeadline")
                case 15..<17:
                    let deadline = link.mediator.nextDeadline
                    let actions = link.tickMediator()
                    checkMediator(actions, "tick")
                    XCTAssertEqual(actions.isEmpty, deadline.map { link.now < $0 } ?? true, "mediator tick vs nextDeadline")
                case 17, 18:
                    // The layers above send relay frames once their side is up.
                    let frame = F.relayFrames[Int(rng.next() % UInt64(F.relayFrames.count))]
                    if rng.next() % 2 == 0, link.server.isEstablished {
                        link.inject(toMediator: frame)
                    } else if link.mediator.isEstablished {
                        link.inject(toServer: frame)
                    }
                default:
                    if rng.next() % 4 == 0 {
                        if rng.next() % 2 == 0 {
                            checkServer(link.serverGoAway(.shuttingDown, "stop"), "goAway")
                        } else {
                            checkMediator(link.mediatorGoAway(.shuttingDown, "stop"), "goAway")
                        }
                    }
                }
            }
            if let s = server.established, let m = mediator.established {
                XCTAssertEqual(s.sessionID, m.sessionID)
                XCTAssertEqual(s.name, m.name)
                XCTAssertFalse(wrongSecret, "established with the wrong secret")
                bothEstablished += 1
            }
            if wrongSecret {
                XCTAssertNil(server.established, "server accepted a wrong secret")
                XCTAssertNil(mediator.established, "mediator accepted a wrong secret")
            }
            let codes = (link.serverLog.closes + link.mediatorLog.closes).map(\.code)
            if codes.contains(.keepaliveTimeout) { keepaliveTimeouts += 1 }
            if codes.contains(.timedOut) { handshakeTimeouts += 1 }
            if codes.contains(.authenticationFailed) { refusals += 1 }
            for code in codes {
                XCTAssertTrue(
                    [.keepaliveTimeout, .timedOut, .authenticationFailed, .shuttingDown].contains(code),
                    "unexpected close code \(code) in run \(run)")
            }
        }
        // The walk must actually reach the interesting states, or it proves nothing.
        XCTAssertGreaterThan(bothEstablished, 300)
        XCTAssertGreaterThan(keepaliveTimeouts, 10)
        XCTAssertGreaterThan(handshakeTimeouts, 10)
        XCTAssertGreaterThan(refusals, 10)
        XCTAssertGreaterThan(delivered, 100)
    }

    // MARK: - Helpers

    static func refused(in actions: [SessionAction]) -> Frame.Refused? {
        for case .refused(let r) in actions.sent { return r }
        return nil
    }

    static func contains(_ haystack: ByteBufferView, _ needle: [UInt8]) -> Bool {
        let h = Array(haystack)
        guard h.count >= needle.count else { return false }
        return (0...(h.count - needle.count)).contains { Array(h[$0..<($0 + needle.count)]) == needle }
    }

    /// A closed pair ignores every frame, tick and request.
    static func assertInert(
        _ link: SessionLink, frames: [Frame], _ label: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let serverCount = link.serverLog.count
        let mediatorCount = link.mediatorLog.count
        for frame in frames {
            link.inject(toServer: frame)
            link.inject(toMediator: frame)
        }
        try link.pump(file: file, line: line)
        link.now = link.now + .seconds(3600)
        link.tickServer()
        link.tickMediator()
        link.serverGoAway(.shuttingDown, "again")
        link.mediatorGoAway(.shuttingDown, "again")
        link.start()
        XCTAssertEqual(Array(link.serverLog[serverCount...]), [], "\(label): server acted after close", file: file, line: line)
        XCTAssertEqual(
            Array(link.mediatorLog[mediatorCount...]), [], "\(label): mediator acted after close", file: file, line: line)
        XCTAssertNil(link.server.nextDeadline, label, file: file, line: line)
        XCTAssertNil(link.mediator.nextDeadline, label, file: file, line: line)
        XCTAssertFalse(link.server.isEstablished, label, file: file, line: line)
        XCTAssertFalse(link.mediator.isEstablished, label, file: file, line: line)
    }

    // MARK: - Liveness probe (a second session claims the name)

    func testAProbeIsAnsweredByTheMediatorAndItsPongGoesUp() throws {
        let link = try F.establishedLink()
        link.now = F.t0 + .seconds(1)
        XCTAssertEqual(link.serverProbe(timeout: .seconds(3)), [.send(.ping(.init(token: 1)))])
        XCTAssertEqual(link.server.nextDeadline, F.t0 + .seconds(4))
        XCTAssertEqual(link.serverProbe(timeout: .seconds(3)), [], "one probe at a time")
        try link.pump()
        XCTAssertEqual(link.serverLog.delivered, [.pong(.init(token: 1))], "the answer reaches the registry")
        link.now = F.t0 + .seconds(5)
        XCTAssertEqual(link.tickServer(), [], "answered: the session lives on")
        XCTAssertTrue(link.server.isEstablished)
        // Ordinary keepalive PONGs stay inside the machine.
        link.now = F.t0 + .seconds(11)
        XCTAssertEqual(link.tickServer(), [.send(.ping(.init(token: 2)))])
        try link.pump()
        XCTAssertEqual(link.serverLog.delivered, [.pong(.init(token: 1))])
    }

    func testAnUnansweredProbeEndsTheSessionWithinItsTimeout() throws {
        let link = try F.establishedLink()
        link.alterToServer = { _ in nil }  // the mediator's NAT mapping is gone: nothing comes back
        link.now = F.t0 + .seconds(1)
        link.serverProbe(timeout: .seconds(3))
        try link.pump()
        link.now = F.t0 + .seconds(4)
        let message = "no answer to a liveness probe within 3000 ms"
        XCTAssertEqual(
            link.tickServer(),
            [
                .send(.goAway(.init(code: .keepaliveTimeout, message: message))),
                .close(SessionEnd(code: .keepaliveTimeout, message: message)),
            ])
        XCTAssertFalse(link.server.isEstablished)
    }

    func testAProbeBeforeEstablishmentDoesNothing() {
        var server = ServerSessionStateMachine(
            settings: SessionSettings(), sessionID: 1, serverNonce: Array(repeating: 1, count: 32), secretFor: { _ in [1] })
        XCTAssertEqual(server.probe(timeout: .seconds(3), now: F.t0), [])
        _ = server.start(now: F.t0)
        XCTAssertEqual(server.probe(timeout: .seconds(3), now: F.t0), [])
    }
}
