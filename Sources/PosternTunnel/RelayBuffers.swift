import NIOCore

/// Read sizes for relayed sockets and the tunnel. Large reads mean fewer frames and syscalls per
/// byte, but NIO keeps each channel's last receive buffer for reuse: a relayed socket therefore
/// starts small (an idle connection costs ~4 KiB, not 64) and grows only while it is busy.
public enum RelayBuffers {
    public static let allocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 4096, maximum: 1024 * 1024)
    /// The tunnel is one channel carrying everything: it starts large.
    public static let tunnelAllocator = AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 256 * 1024, maximum: 1024 * 1024)
    /// For UDP sockets: room for the largest datagram. NIO's default for datagram channels is 2048
    /// bytes, and a longer datagram is silently cut to that.
    public static let datagramAllocator = FixedSizeRecvByteBufferAllocator(capacity: 65536)
}
