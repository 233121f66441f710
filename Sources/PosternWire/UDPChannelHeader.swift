/// The cleartext header of every UDP channel datagram (docs/protocol.md §9.2). It names the session and
/// the channel the datagram belongs to and carries the sender's counter; the AEAD authenticates it as
/// associated data, so none of its fields can be changed or swapped between datagrams.
///
/// ```
/// kind u8 (0x01) | reserved u8 (0) | channel id u16 | session id u64 | counter u64 | sealed message | tag (16)
/// ```
public struct UDPChannelHeader: Hashable, Sendable {
    /// The one kind of datagram this version knows: a sealed channel message.
    public static let kind: UInt8 = 0x01
    /// Bytes of the header.
    public static let length = 20
    /// Bytes of the AEAD tag that ends every datagram (Poly1305).
    public static let tagLength = 16
    /// The largest UDP payload the channel sends or accepts: the IPv4 limit (65,535 − 20 − 8), also
    /// used over IPv6 so one rule holds on both. Larger datagrams are IP-fragmented, never split.
    public static let maxDatagramSize = 65_507
    /// Header and tag: what sealing adds to a message.
    public static let overhead = length + tagLength
    /// Bytes of the AEAD nonce built from the header (`nonce`).
    public static let nonceLength = 12

    public var channelID: UInt16
    public var sessionID: UInt64
    /// The sender's counter for this channel and direction: never the same twice under one key.
    public var counter: UInt64

    public init(channelID: UInt16, sessionID: UInt64, counter: UInt64) {
        self.channelID = channelID
        self.sessionID = sessionID
        self.counter = counter
    }

    /// The 96-bit AEAD nonce: two zero bytes, the channel id, the counter (all big-endian). Channels of
    /// one session share the direction's key, so the channel id keeps their nonces apart.
    public var nonce: [UInt8] {
        var n: [UInt8] = [0, 0, UInt8(truncatingIfNeeded: channelID >> 8), UInt8(truncatingIfNeeded: channelID)]
        n.reserveCapacity(Self.nonceLength)
        for shift in stride(from: 56, through: 0, by: -8) { n.append(UInt8(truncatingIfNeeded: counter >> UInt64(shift))) }
        return n
    }
}
