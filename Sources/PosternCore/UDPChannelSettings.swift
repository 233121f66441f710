import NIOCore

/// Timing of a UDP channel (docs/protocol.md §9.7).
public struct UDPChannelSettings: Hashable, Sendable {
    /// How often each end sends PING on the channel, whatever else flows. Below the gateway's UDP
    /// mapping timeout: 15 s stays under Linux conntrack's 30 s for a flow it saw one way only and
    /// under the 30-60 s of common home routers.
    public var keepaliveInterval: TimeAmount = .seconds(15)
    /// Silence (no authenticated datagram) after which the channel is down and the session's
    /// datagrams go back to the TCP channel: three keepalive intervals, as on the TCP channel (§4.4).
    public var deadTimeout: TimeAmount = .seconds(45)

    public init() {}

    public init(keepaliveInterval: TimeAmount, deadTimeout: TimeAmount) {
        self.keepaliveInterval = keepaliveInterval
        self.deadTimeout = deadTimeout
    }
}
