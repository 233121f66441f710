import NIOCore
import PosternWire

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
            return [.close(SessionEnd.fromPeer(code: g.code, message: g.message))]
        case .refused(let r):
            state.markClosed()
            return [.close(SessionEnd.fromPeer(code: r.code, message: r.message))]
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

    /// A PONG that answers the probe in flight goes up (the registry waits for it); others are absorbed.
    static func answersProbe(_ frame: Frame, liveness: inout Liveness, now: NIODeadline) -> Bool {
        guard case .pong(let p) = frame else { return false }
        return liveness.pong(token: p.token, at: now)
    }

    static func probe(_ liveness: inout Liveness, timeout: TimeAmount, now: NIODeadline) -> [SessionAction] {
        guard let token = liveness.startProbe(timeout: timeout, now: now) else { return [] }
        return [.send(.ping(.init(token: token)))]
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
        case .probeUnanswered(let after):
            state.markClosed()
            let message = "no answer to a liveness probe within \(after.nanoseconds / 1_000_000) ms"
            return [
                .send(.goAway(.init(code: .keepaliveTimeout, message: message))),
                .close(SessionEnd(code: .keepaliveTimeout, message: message)),
            ]
        }
    }
}
