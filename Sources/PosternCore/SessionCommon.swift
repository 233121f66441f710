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
