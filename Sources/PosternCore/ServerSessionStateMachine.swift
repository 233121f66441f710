import NIOCore
import PosternWire

/// The server's side of one tunnel connection (docs/protocol.md §4): HELLO → CHALLENGE →
/// AUTHENTICATE → WELCOME, then keepalive and relay. A pure value: frames and time in, actions out.
public struct ServerSessionStateMachine: SessionStateMachine {
    enum State: Sendable {
        /// Accepted, not started: no timer yet.
        case idle
        case awaitingHello
        case awaitingProof(hello: Frame.Hello, secret: [UInt8])
        case established(Liveness)
        case closed
    }

    private var state: State = .idle
    private let settings: SessionSettings
    private var handshakeDeadline: NIODeadline = .distantFuture
    private let sessionID: UInt64
    private let serverNonce: [UInt8]
    /// Gives the secret of a configured mediator name, nil for unknown names.
    private let secretFor: @Sendable (String) -> [UInt8]?
    /// This server's TLS key (channel binding, mixed into both proofs, docs/protocol.md §4.2) and, with
    /// mutual TLS, the names the mediator's certificate vouches for; nil until the transport is ready.
    private var transport: TransportFacts?

    /// `serverNonce` must be 32 fresh random bytes; `sessionID` unique per server run.
    public init(
        settings: SessionSettings, sessionID: UInt64, serverNonce: [UInt8], secretFor: @escaping @Sendable (String) -> [UInt8]?
    ) {
        self.settings = settings
        self.sessionID = sessionID
        self.serverNonce = serverNonce
        self.secretFor = secretFor
    }

    /// The latest keepalive round trip on the TCP channel (nil before the first PONG, or not established).
    public var keepaliveRoundTrip: TimeAmount? {
        guard case .established(let liveness) = state else { return nil }
        return liveness.roundTrip
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// The mediator's name once it said HELLO.
    public var mediatorName: String? {
        switch state {
        case .awaitingProof(let hello, _): return hello.name
        default: return nil
        }
    }

    /// The connection was accepted: the handshake must complete within `handshakeTimeout` from now.
    public mutating func start(now: NIODeadline) -> [SessionAction] {
        guard case .idle = state else { return [] }
        state = .awaitingHello
        handshakeDeadline = now + settings.handshakeTimeout
        return []
    }

    public mutating func transportReady(_ facts: TransportFacts, now: NIODeadline) -> [SessionAction] {
        // Once, before HELLO (a HELLO without it is refused): later calls change nothing.
        if transport == nil { transport = facts }
        return []
    }

    public mutating func decodeFailed(_ error: WireError, now: NIODeadline) -> [SessionAction] {
        if case .closed = state { return [] }
        return fail(.protocolError, error.description)
    }

    /// Feed one received frame.
    public mutating func receive(_ frame: Frame, now: NIODeadline) -> [SessionAction] {
        switch state {
        case .idle:
            // The handler starts the machine before it reads: nothing to answer yet.
            return []

        case .awaitingHello:
            guard let transport else {
                return fail(.protocolError, "\(frame.name) arrived before the transport was ready")
            }
            guard case .hello(let hello) = frame else {
                return fail(.protocolError, "expected HELLO, got \(frame.name)")
            }
            guard hello.version == Frame.protocolVersion else {
                return fail(.versionMismatch, "mediator speaks protocol \(hello.version), server speaks \(Frame.protocolVersion)")
            }
            guard MediatorName.isValid(hello.name) else {
                return fail(.protocolError, "invalid mediator name")
            }
            // Mutual TLS, before the secret is even looked up: a certificate vouches for the names it
            // carries and no other, so its holder cannot try secrets (or learn names) beyond them.
            if let names = transport.peerCertificateNames, !names.contains(hello.name) {
                // The names are the peer's text (its CA vouched for them, not for their bytes).
                let shown = names.isEmpty ? "no name" : PeerText.sanitized(names.joined(separator: ", "))
                return fail(.authenticationFailed, "the TLS client certificate is for \(shown), not for mediator '\(hello.name)'")
            }
            if transport.requiresClientCertificate && transport.peerCertificateNames == nil {
                return fail(.authenticationFailed, "this server requires a mediator certificate (--mediator-ca) and none was presented")
            }
            guard let secret = secretFor(hello.name) else {
                return fail(.unknownMediator, "no mediator named '\(hello.name)' is configured on this server")
            }
            guard hello.initialWindow > 0, hello.maxPayload >= 1024 else {
                return fail(.protocolError, "window or frame size in HELLO too small")
            }
            state = .awaitingProof(hello: hello, secret: secret)
            return [.send(.challenge(.init(nonce: serverNonce)))]

        case .awaitingProof(let hello, let secret):
            // The mediator may refuse our CHALLENGE (version, timeout, shutdown): log its reason.
            if case .refused(let r) = frame {
                state = .closed
                return [.close(SessionEnd.fromPeer(code: r.code, message: r.message))]
            }
            guard case .authenticate(let auth) = frame else {
                return fail(.protocolError, "expected AUTHENTICATE, got \(frame.name)")
            }
            let binding = transport?.channelBinding ?? []
            let expected = Proof.compute(
                role: .mediator, secret: secret, serverNonce: serverNonce, mediatorNonce: hello.nonce, binding: binding,
                name: hello.name)
            guard Proof.constantTimeEqual(expected, auth.proof) else {
                return fail(
                    .authenticationFailed,
                    binding.isEmpty
                        ? "wrong secret for mediator '\(hello.name)'"
                        : "wrong proof from mediator '\(hello.name)': a wrong secret, or a TLS interceptor in the path (the mediator saw another server key)"
                )
            }
            let proof = Proof.compute(
                role: .server, secret: secret, serverNonce: serverNonce, mediatorNonce: hello.nonce, binding: binding,
                name: hello.name)
            let keys = SessionKeys(
                role: .server, secret: secret, serverNonce: serverNonce, mediatorNonce: hello.nonce, binding: binding,
                sessionID: sessionID, name: hello.name)
            state = .established(Liveness(interval: settings.keepaliveInterval, deadTimeout: settings.deadTimeout, now: now))
            let welcome = Frame.Welcome(
                sessionID: sessionID, proof: proof,
                keepaliveIntervalMillis: UInt32(clamping: settings.keepaliveInterval.nanoseconds / 1_000_000),
                deadTimeoutMillis: UInt32(clamping: settings.deadTimeout.nanoseconds / 1_000_000),
                initialWindow: settings.initialWindow, maxPayload: settings.maxPayload)
            return [
                .send(.welcome(welcome)),
                .established(
                    .init(
                        name: hello.name, sessionID: sessionID, peerInitialWindow: hello.initialWindow,
                        peerMaxPayload: hello.maxPayload, peerSoftwareVersion: hello.softwareVersion, keys: keys)),
            ]

        case .established(var liveness):
            liveness.heard(at: now)
            let answered = SessionCommon.answersProbe(frame, liveness: &liveness, now: now)
            state = .established(liveness)
            if answered { return [.deliver(frame)] }
            return SessionCommon.established(
                frame, handshakeTypes: [Frame.Hello.type, Frame.Authenticate.type, Frame.Challenge.type, Frame.Welcome.type], state: &state)

        case .closed:
            return []
        }
    }

    public mutating func tick(now: NIODeadline) -> [SessionAction] {
        switch state {
        case .idle:
            return []
        case .awaitingHello, .awaitingProof:
            if now >= handshakeDeadline {
                return fail(.timedOut, "no complete handshake within \(settings.handshakeTimeout.seconds) s")
            }
            return []
        case .established(var liveness):
            let action = liveness.tick(now: now)
            state = .established(liveness)
            return SessionCommon.keepalive(action, state: &state)
        case .closed:
            return []
        }
    }

    /// When `tick` should next run.
    public var nextDeadline: NIODeadline? {
        switch state {
        case .awaitingHello, .awaitingProof: return handshakeDeadline
        case .established(let l): return l.nextDeadline
        case .idle, .closed: return nil
        }
    }

    /// Another session claims this one's name: PING, and end with `keepaliveTimeout` unless its own
    /// PONG comes back within `timeout` (docs/protocol.md §4.1).
    public mutating func probe(timeout: TimeAmount, now: NIODeadline) -> [SessionAction] {
        guard case .established(var liveness) = state else { return [] }
        let actions = SessionCommon.probe(&liveness, timeout: timeout, now: now)
        state = .established(liveness)
        return actions
    }

    /// The service ends the session on its own (shutdown, replaced by a newer session).
    public mutating func goAway(_ code: ErrorCode, _ message: String) -> [SessionAction] {
        switch state {
        case .closed, .idle:
            // Before start nothing was said: the session ends quietly.
            state = .closed
            return []
        case .established:
            state = .closed
            return [.send(.goAway(.init(code: code, message: message))), .close(SessionEnd(code: code, message: message))]
        default:
            return fail(code, message)
        }
    }

    /// Refuse during the handshake (REFUSED) or end an established session (GOAWAY).
    private mutating func fail(_ code: ErrorCode, _ message: String) -> [SessionAction] {
        if case .established = state { return goAway(code, message) }
        state = .closed
        return [.send(.refused(.init(code: code, message: message))), .close(SessionEnd(code: code, message: message))]
    }
}

extension ServerSessionStateMachine.State: ClosableState {
    mutating func markClosed() { self = .closed }
}
