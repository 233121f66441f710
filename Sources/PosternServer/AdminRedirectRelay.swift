import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// `postern ctl redirect NAME PORT --to HOST:PORT`: a port redirected through the admin API whose LAN
/// senders are relayed to a target, exactly as a `udp:NAME/…=HOST:PORT` forward relays them (each
/// sender its own server socket connected to the target, `--udp-max-flows` of them at most). Held by
/// the `MediatorLink` while the port lives; when the port closes or the session ends this goes, and
/// its sockets and sweeper with it.
final class AdminRedirectRelay: DatagramPathReceiver {
    private let forward: UDPForwardFromMediator
    /// Nil only for a forward stopped before it attached, which this one never is.
    private let port: UDPForwardFromMediator.MediatorPort?

    init(forward: UDPForwardFromMediator, path: DatagramPath, portID: UInt32) {
        self.forward = forward
        _ = forward.start()
        self.port = forward.attach(path: path, portID: portID)
    }

    func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32) {
        port?.datagramReceived(bytes, peer: peer, portID: portID)
    }

    func datagramPathClosed(portID: UInt32) {
        port?.datagramPathClosed(portID: portID)
    }

    deinit {
        if let port { port.datagramPathClosed(portID: port.portID) }
        forward.stop()
    }
}
