import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Makes a UDP socket's kernel check each datagram's checksum before queueing it. Without a socket
/// filter Linux queues a datagram first and checks its checksum only when it is read: one with a
/// bad checksum wakes the event loop, then recvmsg(2) drops it and finds nothing, which trips an
/// assertion in SwiftNIO's read loop in debug builds (a remote crash from one datagram). With any
/// filter attached, `udp_queue_rcv_one_skb` checks the checksum first and drops such a datagram
/// before it wakes anyone. The filter is one BPF instruction that accepts every datagram whole.
public enum DatagramChecksumFilter {
    /// struct sock_filter (linux/filter.h).
    struct Instruction {
        var code: UInt16
        var jt: UInt8
        var jf: UInt8
        var k: UInt32
    }

    /// struct sock_fprog: the length, then (after padding) the pointer, as in C.
    struct Program {
        var length: UInt16
        var instructions: UnsafeMutablePointer<Instruction>
    }

    /// BPF_RET | BPF_K with k = the whole datagram. Allocated once and never freed: the kernel
    /// copies it at each setsockopt, which may run later, on the channel's event loop.
    nonisolated(unsafe) private static let acceptAll: UnsafeMutablePointer<Instruction> = {
        let p = UnsafeMutablePointer<Instruction>.allocate(capacity: 1)
        p.initialize(to: Instruction(code: 0x06, jt: 0, jf: 0, k: UInt32.max))
        return p
    }()

    /// SO_ATTACH_FILTER (asm-generic/socket.h), which Glibc does not export to Swift.
    static let attachFilter: CInt = 26

    /// Attaches the filter to `channel`'s socket; a channel that is not a socket is left as it is.
    public static func attach(to channel: Channel) -> EventLoopFuture<Void> {
        guard let provider = channel as? SocketOptionProvider else { return channel.eventLoop.makeSucceededVoidFuture() }
        precondition(MemoryLayout<Instruction>.size == 8 && MemoryLayout<Program>.size == 16, "sock_filter/sock_fprog layout")
        return provider.unsafeSetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(attachFilter),
            value: Program(length: 1, instructions: acceptAll))
    }
}
