/// What one UDP channel saw, for `ctl mediators` and the lab tests. Drops are counted by reason and
/// never logged one by one here: anyone can send datagrams to the service port.
public struct UDPChannelCounters: Hashable, Sendable {
    /// Datagrams sealed and handed out to be sent (keepalives included).
    public var sent: UInt64 = 0
    /// Authenticated, fresh datagrams (keepalives included).
    public var received: UInt64 = 0
    /// DATAGRAM and PACKET messages delivered to the layer above.
    public var delivered: UInt64 = 0
    /// PINGs sent.
    public var keepalivesSent: UInt64 = 0
    /// Did not authenticate: forged, altered, sealed under another key; also the refused top counter.
    public var forged: UInt64 = 0
    /// Authentic counter already seen, or older than the replay window.
    public var replayed: UInt64 = 0
    /// Shorter than a header and tag.
    public var truncated: UInt64 = 0
    /// Longer than any channel datagram.
    public var tooLarge: UInt64 = 0
    /// Not this channel's: another kind, reserved byte, session or channel id, or (at the mediator) not
    /// from the server's address.
    public var stray: UInt64 = 0
    /// Authenticated but unreadable inside: only a faulty peer sends these.
    public var malformed: UInt64 = 0
    /// Times the peer's address moved (server side).
    public var migrations: UInt64 = 0
    /// Messages not sent because they would not fit one datagram.
    public var oversize: UInt64 = 0

    public init() {}

    /// Every datagram received and dropped.
    public var dropped: UInt64 { forged &+ replayed &+ truncated &+ tooLarge &+ stray &+ malformed }
}
