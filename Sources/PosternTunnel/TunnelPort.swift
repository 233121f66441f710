import PosternWire

/// The local end of one port, on either side of the tunnel: a socket the session relays for.
/// The session hands it the relay frames addressed to its port id (docs/protocol.md §6).
public protocol TunnelPort: AnyObject {
    var portID: UInt32 { get }
    /// DATA, DATAGRAM, WINDOW, FINISHED or RESET for this port.
    func tunnelReceived(_ frame: Frame)
    /// The tunnel can take writes again: a port that held data may send and read on.
    func tunnelBecameWritable()
    /// The session is gone: drop the local side at once.
    func tunnelClosed()
}
