import NIOCore
import PosternCore
import PosternWire

/// The user of a port's datagrams: a datagram relay.
public protocol DatagramPathReceiver: AnyObject {
    /// A datagram for this port, with its peer (see `DatagramPath.send`).
    func datagramReceived(_ bytes: ByteBuffer, peer: Endpoint, portID: UInt32)
    /// The path is gone (the session ended): the port is dead.
    func datagramPathClosed(portID: UInt32)
    /// The mediator's policy dropped `count` datagrams this end sent to the port (DENIED,
    /// docs/protocol.md §6.5); only for a port whose OPEN asked. `count` is the peer's word: bound it.
    func datagramsDenied(_ count: UInt32, portID: UInt32)
}

extension DatagramPathReceiver {
    /// Most receivers never ask for DENIED; one that arrives anyway changes nothing.
    public func datagramsDenied(_ count: UInt32, portID: UInt32) {}
}
