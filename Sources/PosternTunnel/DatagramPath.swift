import NIOCore
import PosternCore
import PosternWire

/// How datagrams (and later IP packets) travel between the two ends for a port: DATAGRAM frames on
/// the tunnel's TCP channel today (`TunnelDatagramPath`), a UDP channel next. A path may drop: it
/// carries datagrams up to a size of its own and, when it cannot take one now, the relay drops it as
/// a router would. Lives on the event loop of the tunnel it uses.
public protocol DatagramPath: AnyObject {
    /// False once the path is gone for good (its session ended).
    var isOpen: Bool { get }
    /// Whether a datagram sent now would be carried; when false the relay drops instead of queueing.
    var canSend: Bool { get }
    /// The largest datagram the path carries to or from `peer` (the peer's address is part of what
    /// the path carries, so the limit depends on its family).
    func maxDatagramSize(for peer: Endpoint) -> Int
    /// Sends one datagram for `portID`. `peer` is the destination (server to mediator) or the sender
    /// (mediator to server), as in DATAGRAM (docs/protocol.md §6.2).
    func send(portID: UInt32, peer: Endpoint, bytes: ByteBuffer)
    /// Delivers the datagrams that arrive for `portID` to `receiver` until `detach`.
    func attach(portID: UInt32, _ receiver: DatagramPathReceiver)
    func detach(portID: UInt32)
}

extension DatagramPath {
    /// Sends a datagram if the size rule admits it (`DatagramDrops.admit`: it fits, and the path can
    /// take it now); otherwise counts the drop. Every relay sends through here.
    @discardableResult
    public func offer(portID: UInt32, peer: Endpoint, bytes: ByteBuffer, drops: inout DatagramDrops) -> Bool {
        guard drops.admit(size: bytes.readableBytes, limit: maxDatagramSize(for: peer), pathCanTake: canSend) else { return false }
        send(portID: portID, peer: peer, bytes: bytes)
        return true
    }
}
