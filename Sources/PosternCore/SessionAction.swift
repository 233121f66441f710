import PosternWire

/// What a session state machine asks its handler to do. The machine never does I/O itself.
public enum SessionAction: Hashable, Sendable {
    /// Write this frame to the channel.
    case send(Frame)
    /// The handshake is over; relay frames may flow.
    case established(EstablishedSession)
    /// A frame for the layer above (requests, answers, relay, environment).
    case deliver(Frame)
    /// Close the channel, after writing any frame sent before this action.
    case close(SessionEnd)
}
