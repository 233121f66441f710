import NIOCore

/// Writes datagrams to one UDP socket and flushes once per pass of its event loop, not once per
/// datagram: everything a pass queues (a read batch's worth, `RelayBuffers.datagramBatch` datagrams per
/// read of each busy socket) leaves in one `sendmmsg(2)`, which NIO issues when a flush finds several
/// datagrams pending. The flush runs as a task of the same pass, after the loop has handled every
/// socket that was ready, so no datagram waits for a later event: what a lone datagram loses is one
/// task hop, not a timer.
///
/// Lives on the channel's event loop; every call must come from it.
public final class DatagramWriteBatcher {
    private let channel: Channel
    private var flushScheduled = false
    /// Datagrams written and flushes issued: their ratio is the batch size actually reached.
    public private(set) var written: UInt64 = 0
    public private(set) var flushes: UInt64 = 0

    public init(channel: Channel) {
        self.channel = channel
    }

    /// Queues `envelope` for the socket; the pass's flush sends it.
    public func write(_ envelope: AddressedEnvelope<ByteBuffer>) {
        channel.eventLoop.assertInEventLoop()
        channel.write(envelope, promise: nil)
        written &+= 1
        guard !flushScheduled else { return }
        flushScheduled = true
        channel.eventLoop.execute { [self] in
            flushScheduled = false
            flushes &+= 1
            channel.flush()
        }
    }
}
