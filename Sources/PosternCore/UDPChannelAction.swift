import NIOCore
import PosternWire

/// What a UDP channel machine asks its I/O to do. The machine never touches a socket.
public enum UDPChannelAction<Address: Hashable & Sendable>: Hashable, Sendable {
    /// Send this datagram to this address.
    case send(ByteBuffer, to: Address)
    /// A DATAGRAM or PACKET message for the layer above.
    case deliver(UDPChannelMessage)
    /// The channel carries datagrams both ways now: send the session's datagrams on it.
    case up
    /// The channel stopped carrying: send the session's datagrams on the TCP channel again.
    case down
    /// The peer's address moved (server side): send to the new one from now on.
    case migrated(from: Address?, to: Address)
}

/// The answer to offering a message to the channel (`UDPChannelStateMachine.seal`).
public enum UDPChannelSendResult<Address: Hashable & Sendable>: Hashable, Sendable {
    /// Send this datagram to this address.
    case send(ByteBuffer, to: Address)
    /// The channel is not up: the message goes on the TCP channel instead (or is dropped).
    case notUp
    /// Too large for one channel datagram: count an oversize drop.
    case tooLarge
}
