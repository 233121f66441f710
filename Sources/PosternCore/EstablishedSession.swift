import PosternWire

/// What both sides know once the handshake succeeded.
public struct EstablishedSession: Hashable, Sendable {
    public var name: String
    public var sessionID: UInt64
    /// The peer's receive window per port: what we may send on a port before a WINDOW.
    public var peerInitialWindow: UInt32
    /// The peer's largest accepted payload.
    public var peerMaxPayload: UInt32
    public var peerSoftwareVersion: String
    /// What the channels beside the TCP connection will seal their packets with (§4.5).
    public var keys: SessionKeys

    public init(
        name: String, sessionID: UInt64, peerInitialWindow: UInt32, peerMaxPayload: UInt32, peerSoftwareVersion: String,
        keys: SessionKeys
    ) {
        self.keys = keys
        self.name = name
        self.sessionID = sessionID
        self.peerInitialWindow = peerInitialWindow
        self.peerMaxPayload = peerMaxPayload
        self.peerSoftwareVersion = peerSoftwareVersion
    }
}
