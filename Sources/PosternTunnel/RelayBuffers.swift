import NIOCore
import NIOPosix

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

// Every socket a StreamRelay serves needs the same options: reads are paced by the relay (window
// and tunnel backpressure), EOF must arrive as a half-close, and small writes must not wait.
extension ClientBootstrap {
    public func relayedStreamOptions() -> ClientBootstrap {
        channelOption(ChannelOptions.autoRead, value: false)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.allocator)
    }
}

extension ServerBootstrap {
    public func relayedStreamChildOptions() -> ServerBootstrap {
        childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.recvAllocator, value: RelayBuffers.allocator)
    }
}
