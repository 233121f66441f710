import NIOCore

/// Read sizes for relayed sockets and the tunnel. Large reads mean fewer frames and syscalls per
/// byte; the adaptive allocator shrinks again for connections that carry little.
public enum RelayBuffers {
    public static let allocator = AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 64 * 1024, maximum: 1024 * 1024)
}
