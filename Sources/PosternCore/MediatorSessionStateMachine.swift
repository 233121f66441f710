import NIOCore
import PosternWire

/// The mediator's side of one tunnel connection (docs/protocol.md §4). It speaks first (HELLO),
/// proves the secret, and checks the server's proof before trusting anything the server asks.
public struct MediatorSessionStateMachine: SessionStateMachine {
    enum State: Sendable {
        case idle
        case awaitingChallenge
        case awaitingWelcome(serverNonce: [UInt8])
        case established(Liveness)
        case closed
    }

    private var state: State = .idle
    private let name: String
    private let secret: [UInt8]
    private let nonce: [UInt8]
    private let settings: SessionSettings
    private let softwareVersion: String
    private var handshakeDeadline: NIODeadline = .distantFuture
    /// The server key fingerprint the TLS handshake presented (empty on plain TCP), mixed into both
    /// proofs (docs/protocol.md §4.2); nil until the transport is ready.
    private var channelBinding: [UInt8]?

    public init(name: String, secret: [UInt8], nonce: [UInt8], softwareVersion: String, settings: SessionSettings) {
        self.name = name
        self.secret = secret
        self.nonce = nonce
        self.softwareVersion = softwareVersion
        self.settings = settings
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

    /// The channel is connected: say HELLO.
    public mutating func start(now: NIODeadline) -> [SessionAction] {
        guard case .idle = state else { return [] }
        state = .awaitingChallenge
        handshakeDeadline = now + settings.handshakeTimeout
        return [
            .send(
                .hello(
                    .init(
                        name: name, softwareVersion: softwareVersion, nonce: nonce,
                        initialWindow: settings.initialWindow, maxPayload: settings.maxPayload)))
        ]
    }

    public mutating func transportReady(_ facts: TransportFacts, now: NIODeadline) -> [SessionAction] {
        // Once, before CHALLENGE (a CHALLENGE without it is refused): later calls change nothing. HELLO
        // may go out before it: TLS holds it until its own handshake is done.
        if channelBinding == nil { channelBinding = facts.channelBinding }
        return []
    }

    public mutating func decodeFailed(_ error: WireError, now: NIODeadline) -> [SessionAction] {
        if case .closed = state { return [] }
        return fail(.protocolError, error.description)
    }

    public mutating func receive(_ frame: Frame, now: NIODeadline) -> [SessionAction] {
        switch state {
        case .idle, .closed:
            return []
        case .awaitingChallenge:
            switch frame {
            case .challenge(let c):
                guard let channelBinding else {
                    return fail(.protocolError, "CHALLENGE arrived before the transport was ready")
                }
                guard c.version == Frame.protocolVersion else {
                    return fail(.versionMismatch, "server speaks protocol \(c.version), mediator speaks \(Frame.protocolVersion)")
                }
                state = .awaitingWelcome(serverNonce: c.nonce)
                let proof = Proof.compute(
                    role: .mediator, secret: secret, serverNonce: c.nonce, mediatorNonce: nonce, binding: channelBinding, name: name)
                return [.send(.authenticate(.init(proof: proof)))]
            case .refused(let r):
                state = .closed
                return [.close(SessionEnd.fromPeer(code: r.code, message: r.message))]
            default:
                return fail(.protocolError, "expected CHALLENGE, got \(frame.name)")
            }
        case .awaitingWelcome(let serverNonce):
            switch frame {
            case .welcome(let w):
                // Set: CHALLENGE needed it to get here.
                let binding = channelBinding ?? []
                let expected = Proof.compute(
                    role: .server, secret: secret, serverNonce: serverNonce, mediatorNonce: nonce, binding: binding, name: name)
                guard Proof.constantTimeEqual(expected, w.proof) else {
                    return fail(
                        .authenticationFailed,
                        "the server's proof is wrong: it does not know this mediator's secret, or a TLS interceptor sits in the path")
                }
                guard w.keepaliveIntervalMillis > 0, w.deadTimeoutMillis > 0, w.initialWindow > 0, w.maxPayload >= 1024 else {
                    return fail(.protocolError, "WELCOME carries zero timing or window values")
                }
                // The server's timing governs both ends, so both detect a dead path alike.
                let liveness = Liveness(
                    interval: .milliseconds(Int64(w.keepaliveIntervalMillis)),
                    deadTimeout: .milliseconds(Int64(w.deadTimeoutMillis)), now: now)
                state = .established(liveness)
                let keys = SessionKeys(
                    role: .mediator, secret: secret, serverNonce: serverNonce, mediatorNonce: nonce, binding: binding,
                    sessionID: w.sessionID, name: name)
                return [
                    .established(
                        .init(
                            name: name, sessionID: w.sessionID, peerInitialWindow: w.initialWindow,
                            peerMaxPayload: w.maxPayload, peerSoftwareVersion: "", keys: keys))
                ]
            case .refused(let r):
                state = .closed
                return [.close(SessionEnd.fromPeer(code: r.code, message: r.message))]
            default:
                return fail(.protocolError, "expected WELCOME, got \(frame.name)")
            }
        case .established(var liveness):
            liveness.heard(at: now)
            let answered = SessionCommon.answersProbe(frame, liveness: &liveness, now: now)
            state = .established(liveness)
            if answered { return [.deliver(frame)] }
            return SessionCommon.established(
                frame, handshakeTypes: [Frame.Hello.type, Frame.Challenge.type, Frame.Authenticate.type, Frame.Welcome.type],
                state: &state)
        }
    }

    public mutating func tick(now: NIODeadline) -> [SessionAction] {
        switch state {
        case .awaitingChallenge, .awaitingWelcome:
            if now >= handshakeDeadline {
                return fail(.timedOut, "the server did not finish the handshake within \(settings.handshakeTimeout.seconds) s")
            }
            return []
        case .established(var liveness):
            let action = liveness.tick(now: now)
            state = .established(liveness)
            return SessionCommon.keepalive(action, state: &state)
        case .idle, .closed:
            return []
        }
    }

    public var nextDeadline: NIODeadline? {
        switch state {
        case .awaitingChallenge, .awaitingWelcome: return handshakeDeadline
        case .established(let l): return l.nextDeadline
        case .idle, .closed: return nil
        }
    }

    public mutating func probe(timeout: TimeAmount, now: NIODeadline) -> [SessionAction] {
        guard case .established(var liveness) = state else { return [] }
        let actions = SessionCommon.probe(&liveness, timeout: timeout, now: now)
        state = .established(liveness)
        return actions
    }

    public mutating func goAway(_ code: ErrorCode, _ message: String) -> [SessionAction] {
        switch state {
        case .closed, .idle:
            state = .closed
            return []
        case .established:
            state = .closed
            return [.send(.goAway(.init(code: code, message: message))), .close(SessionEnd(code: code, message: message))]
        default:
            return fail(code, message)
        }
    }

    private mutating func fail(_ code: ErrorCode, _ message: String) -> [SessionAction] {
        if case .established = state { return goAway(code, message) }
        state = .closed
        return [.send(.refused(.init(code: code, message: message))), .close(SessionEnd(code: code, message: message))]
    }
}

extension MediatorSessionStateMachine.State: ClosableState {
    mutating func markClosed() { self = .closed }
}
