import NIOCore
import PosternWire

/// The server's side of one tunnel connection (docs/protocol.md §4): HELLO → CHALLENGE →
/// AUTHENTICATE → WELCOME, then keepalive and relay. A pure value: frames and time in, actions out.
public struct ServerSessionStateMachine: Sendable {
    enum State: Sendable {
        case awaitingHello
        case awaitingProof(hello: Frame.Hello, serverNonce: [UInt8], secret: [UInt8])
        case established(Liveness)
        case closed
    }

    private var state: State = .awaitingHello
    private let settings: SessionSettings
    private let handshakeDeadline: NIODeadline
    private let sessionID: UInt64
    private let serverNonce: [UInt8]
    /// This server's TLS key fingerprint (empty on plain TCP), mixed into both proofs (docs/protocol.md §4.2).
    private let channelBinding: [UInt8]

    /// `serverNonce` must be 32 fresh random bytes; `sessionID` unique per server run.
    public init(settings: SessionSettings, sessionID: UInt64, serverNonce: [UInt8], channelBinding: [UInt8] = [], now: NIODeadline) {
        self.settings = settings
        self.channelBinding = channelBinding
        self.sessionID = sessionID
        self.serverNonce = serverNonce
        self.handshakeDeadline = now + settings.handshakeTimeout
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// The mediator's name once it said HELLO.
    public var mediatorName: String? {
        switch state {
        case .awaitingProof(let hello, _, _): return hello.name
        default: return nil
        }
    }

    /// Feed one received frame. `secretFor` returns the secret of a known mediator name.
    public mutating func receive(
        _ frame: Frame, now: NIODeadline, secretFor: (String) -> [UInt8]?
    ) -> [SessionAction] {
        switch state {
        case .awaitingHello:
            guard case .hello(let hello) = frame else {
                return fail(.protocolError, "expected HELLO, got \(frame.name)")
            }
            guard hello.version == Frame.protocolVersion else {
                return fail(.versionMismatch, "mediator speaks protocol \(hello.version), server speaks \(Frame.protocolVersion)")
            }
            guard MediatorName.isValid(hello.name) else {
                return fail(.protocolError, "invalid mediator name")
            }
            guard let secret = secretFor(hello.name) else {
                return fail(.unknownMediator, "no mediator named '\(hello.name)' is configured on this server")
            }
            guard hello.initialWindow > 0, hello.maxPayload >= 1024 else {
                return fail(.protocolError, "window or frame size in HELLO too small")
            }
            state = .awaitingProof(hello: hello, serverNonce: serverNonce, secret: secret)
            return [.send(.challenge(.init(nonce: serverNonce)))]

        case .awaitingProof(let hello, let serverNonce, let secret):
            // The mediator may refuse our CHALLENGE (version, timeout, shutdown): log its reason.
            if case .refused(let r) = frame {
                state = .closed
                return [.close(SessionEnd(code: r.code, message: r.message, byPeer: true))]
            }
            guard case .authenticate(let auth) = frame else {
                return fail(.protocolError, "expected AUTHENTICATE, got \(frame.name)")
            }
            let expected = Proof.compute(
                role: .mediator, secret: secret, serverNonce: serverNonce, mediatorNonce: hello.nonce, binding: channelBinding,
                name: hello.name)
            guard Proof.constantTimeEqual(expected, auth.proof) else {
                return fail(
                    .authenticationFailed,
                    channelBinding.isEmpty
                        ? "wrong secret for mediator '\(hello.name)'"
                        : "wrong proof from mediator '\(hello.name)': a wrong secret, or a TLS interceptor in the path (the mediator saw another server key)"
                )
            }
            let proof = Proof.compute(
                role: .server, secret: secret, serverNonce: serverNonce, mediatorNonce: hello.nonce, binding: channelBinding,
                name: hello.name)
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
                        peerMaxPayload: hello.maxPayload, peerSoftwareVersion: hello.softwareVersion)),
            ]

        case .established(var liveness):
            liveness.heard(at: now)
            state = .established(liveness)
            return SessionCommon.established(
                frame, handshakeTypes: [Frame.Hello.type, Frame.Authenticate.type, Frame.Challenge.type, Frame.Welcome.type], state: &state)

        case .closed:
            return []
        }
    }

    public mutating func tick(now: NIODeadline) -> [SessionAction] {
        switch state {
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
        case .closed: return nil
        }
    }

    /// The service ends the session on its own (shutdown, replaced by a newer session).
    public mutating func goAway(_ code: ErrorCode, _ message: String) -> [SessionAction] {
        switch state {
        case .closed:
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

extension TimeAmount {
    /// Whole seconds, for messages.
    public var seconds: Int64 { nanoseconds / 1_000_000_000 }
}

/// Rules both session machines apply once established.
enum SessionCommon {
    static func established<S>(_ frame: Frame, handshakeTypes: Set<UInt8>, state: inout S) -> [SessionAction]
    where S: ClosableState {
        switch frame {
        case .ping(let p):
            return [.send(.pong(p))]
        case .pong:
            return []
        case .goAway(let g):
            state.markClosed()
            return [.close(SessionEnd(code: g.code, message: g.message, byPeer: true))]
        case .refused(let r):
            state.markClosed()
            return [.close(SessionEnd(code: r.code, message: r.message, byPeer: true))]
        default:
            if handshakeTypes.contains(frame.type) {
                state.markClosed()
                let message = "unexpected \(frame.name) in an established session"
                return [
                    .send(.goAway(.init(code: .protocolError, message: message))),
                    .close(SessionEnd(code: .protocolError, message: message)),
                ]
            }
            return [.deliver(frame)]
        }
    }

    static func keepalive<S>(_ action: Liveness.Action, state: inout S) -> [SessionAction] where S: ClosableState {
        switch action {
        case .none:
            return []
        case .sendPing(let token):
            return [.send(.ping(.init(token: token)))]
        case .dead(let silent):
            state.markClosed()
            let message = "peer silent for \(silent.nanoseconds / 1_000_000) ms"
            return [
                .send(.goAway(.init(code: .keepaliveTimeout, message: message))),
                .close(SessionEnd(code: .keepaliveTimeout, message: message)),
            ]
        }
    }
}

protocol ClosableState {
    mutating func markClosed()
}

extension ServerSessionStateMachine.State: ClosableState {
    mutating func markClosed() { self = .closed }
}
