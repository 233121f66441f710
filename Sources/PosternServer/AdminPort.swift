import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// A port driven by hand through the admin API (`postern ctl connect/listen`). There is no local
/// socket behind it: what arrives is counted and reported as events, and the window is granted back
/// at once so the mediator's side never stalls.
final class AdminPort: TunnelPort, DatagramPathReceiver {
    let portID: UInt32
    private let link: MediatorLink
    private let events: EventLog
    private var state = StreamState()
    private(set) var received: UInt64 = 0

    init(portID: UInt32, link: MediatorLink, events: EventLog) {
        self.portID = portID
        self.link = link
        self.events = events
    }

    func tunnelReceived(_ frame: Frame) {
        switch frame {
        case .data(let d):
            let n = d.bytes.readableBytes
            received &+= UInt64(n)
            if n > 0 { link.session.send(.window(.init(portID: portID, increment: UInt32(n)))) }
        case .datagram(let d):
            datagramReceived(d.bytes, peer: d.peer, portID: portID)
        case .finished:
            events.post(
                ServerEvent(mediator: link.name, kind: "finished", port: portID, detail: "peer finished sending after \(received) bytes"))
            _ = state.apply(.remoteFin)
            // Nothing to send from here: finish our direction too, which closes the port.
            if state.apply(.localEOF) != .duplicate {
                link.session.send(.finished(.init(portID: portID)))
            }
            done()
        case .reset(let r):
            _ = state.apply(.reset)
            events.post(ServerEvent(mediator: link.name, kind: "reset", port: portID, detail: "\(r.code) after \(received) bytes"))
            done()
        default:
            break
        }
    }

    private func done() {
        link.session.unregister(portID)
        link.forget(portID: portID)
    }

    /// A datagram of a UDP port, from the session's datagram path (UDP or TCP channel).
    func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
        received &+= UInt64(bytes.readableBytes)
        events.post(ServerEvent(mediator: link.name, kind: "datagram", port: portID, detail: "\(bytes.readableBytes) bytes from \(peer)"))
    }

    func datagramPathClosed(portID: UInt32) {}

    func tunnelBecameWritable() {}
    func tunnelClosed() {}
}
