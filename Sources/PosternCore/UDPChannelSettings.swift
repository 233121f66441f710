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
    /// How long a PING may go unanswered, with nothing at all heard from the peer since it was sent,
    /// before the channel is down (§9.7, "Silence"): a gateway that starts dropping the channel (or a
    /// NAT mapping that timed out) is noticed in seconds, not after the dead timeout.
    public var answerTimeout: TimeAmount = .seconds(3)
    /// Sealing a datagram when nothing was heard from the peer for this long sends a PING to check the
    /// path (§9.7, "Probe"); unanswered ones are repeated this often while the answer timeout runs.
    public var probeAfter: TimeAmount = .seconds(1)

    public init() {}

    public init(keepaliveInterval: TimeAmount, deadTimeout: TimeAmount) {
        self.keepaliveInterval = keepaliveInterval
        self.deadTimeout = deadTimeout
        self.answerTimeout = min(.seconds(3), deadTimeout)
        self.probeAfter = min(.seconds(1), keepaliveInterval)
    }
}
