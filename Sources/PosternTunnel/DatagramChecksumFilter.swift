import NIOCore

/// Makes a UDP socket's kernel check each datagram's checksum before queueing it. Without a socket
/// filter Linux queues a datagram first and checks its checksum only when it is read: one with a
/// bad checksum wakes the event loop, then recvmsg(2) drops it and finds nothing, which trips an
/// assertion in SwiftNIO's read loop in debug builds (a remote crash from one datagram). With any
/// filter attached, `udp_queue_rcv_one_skb` checks the checksum first and drops such a datagram
/// before it wakes anyone. The filter is one BPF instruction that accepts every datagram whole.
public enum DatagramChecksumFilter {
    /// Attaches the filter to `channel`'s socket; a channel that is not a socket is left as it is.
    public static func attach(to channel: Channel) -> EventLoopFuture<Void> {
        ReturnProgram.attach(returning: UInt32.max, as: ReturnProgram.attachFilter, to: channel)
    }
}
