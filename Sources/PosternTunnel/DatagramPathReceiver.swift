import NIOCore
import PosternCore
import PosternWire

/// The user of a port's datagrams: a datagram relay.
public protocol DatagramPathReceiver: AnyObject {
    /// A datagram for this port, with its peer (see `DatagramPath.send`).
    func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32)
    /// The path is gone (the session ended): the port is dead.
    func datagramPathClosed(portID: UInt32)
}
