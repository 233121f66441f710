import NIOCore
import NIOPosix
import PosternCore

/// Read sizes for relayed sockets and the tunnel. Large reads mean fewer frames and syscalls per
/// byte, but NIO keeps each channel's last receive buffer for reuse: a relayed socket therefore
/// starts small (an idle connection costs ~4 KiB, not 64) and grows only while it is busy, up to
/// 256 KiB: with 1 MiB a server relaying 8 iperf3 streams peaked at 61-64 MiB RSS, with 256 KiB at
/// 55 MiB, throughput unchanged within the noise, ~8% more relay CPU per GB (tools/bench, issue 15).
public enum RelayBuffers {
    public static let allocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 4096, maximum: 256 * 1024)
    /// The tunnel is one channel carrying everything: it starts large.
    public static let tunnelAllocator = AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 256 * 1024, maximum: 1024 * 1024)
    /// For UDP sockets: room for the largest datagram. NIO's default for datagram channels is 2048
    /// bytes, and a longer datagram is silently cut to that.
    public static let datagramAllocator = FixedSizeRecvByteBufferAllocator(capacity: 65536)
    /// Datagrams one `recvmmsg(2)` may return on a busy UDP socket (`batchedDatagramOptions`). NIO reads
    /// up to `maxMessagesPerRead` (4) such batches per readiness event.
    public static let datagramBatch = 16
    /// NIO splits one receive buffer evenly between the batch's datagrams: each slot must hold the
    /// largest datagram, or a longer one would be cut. So 16 x 64 KiB = 1 MiB, made at the first read
    /// and reused while no datagram read into it is kept (receivers copy what they keep:
    /// `DatagramFlowTable`'s backlog, the channel's opened messages).
    public static let datagramBatchAllocator = FixedSizeRecvByteBufferAllocator(capacity: datagramBatch * 65536)
    /// Kernel buffer asked for each batched socket, both ways. The default (208 KiB) holds about 2 ms
    /// of a 1 Gbit/s stream of 1,400-byte datagrams (each costs ~2.3 KiB of buffer); whenever the
    /// loop is not scheduled for longer, the kernel drops. 4 MiB is ~40 ms; the kernel caps it at
    /// `net.core.rmem_max`/`wmem_max` (raise those to let it take effect). A limit, not an allocation.
    public static let datagramSocketBuffer = 4 * 1024 * 1024
    /// UDP GSO for the UDP channel sockets (`DatagramWriteBatcher`): segments up to 1,452 bytes, what
    /// fits a 1,500-byte MTU under IPv6 and IPv4 headers. A 1,400-byte datagram of a forward sealed
    /// for the channel is 1,448 bytes; larger datagrams go one by one.
    public static let channelSegmentation = UDPSegmentRuns(maxSegmentSize: 1_452)
    /// Socket reads per `read()` of a relayed socket (and per read event of a TLS tunnel): what one
    /// read brings is all a relay holds before it sends, so one keeps that to one buffer (a second
    /// read in the same request would land while the first is still held and be copied behind it).
    public static let relayedReadsPerRead: UInt = 1
}

extension DatagramBootstrap {
    /// For the few UDP sockets that carry a whole session's or forward's datagrams (the UDP channel
    /// sockets at both ends, a `udp:` forward's public socket): read up to `RelayBuffers.datagramBatch`
    /// datagrams per system call (`recvmmsg(2)`) instead of one. Per-flow sockets keep
    /// `datagramAllocator`: a megabyte each would be too much for thousands of flows.
    ///
    /// `receiveOffload`: UDP GRO where the kernel has it. A run the peer sent as one GSO write (or the
    /// kernel coalesced) arrives as one buffer of equal segments: the handler must take it apart
    /// (`forEachSegment`), so only the channel sockets, whose handlers do, ask for it.
    public func batchedDatagramOptions(receiveOffload: Bool = false) -> DatagramBootstrap {
        let batched = channelOption(ChannelOptions.datagramVectorReadMessageCount, value: RelayBuffers.datagramBatch)
            .channelOption(ChannelOptions.recvAllocator, value: RelayBuffers.datagramBatchAllocator)
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: RelayBuffers.datagramSocketBuffer)
            .channelOption(ChannelOptions.socketOption(.so_sndbuf), value: RelayBuffers.datagramSocketBuffer)
        guard receiveOffload, System.supportsUDPReceiveOffload else { return batched }
        return batched.channelOption(ChannelOptions.datagramReceiveOffload, value: true)
            .channelOption(ChannelOptions.datagramReceiveSegmentSize, value: true)
    }
}

extension AddressedEnvelope where DataType == ByteBuffer {
    /// The datagrams of a received envelope: one, or, when UDP GRO joined several (`metadata`'s
    /// `segmentSize`), each segment in order, the last one possibly shorter.
    public func forEachSegment(_ body: (ByteBuffer) -> Void) {
        guard let size = metadata?.segmentSize, size > 0, data.readableBytes > size else {
            body(data)
            return
        }
        var rest = data
        while rest.readableBytes > 0, let segment = rest.readSlice(length: Swift.min(size, rest.readableBytes)) {
            body(segment)
        }
    }
}

// Every socket a StreamRelay serves needs the same options: reads are paced by the relay (window
// and tunnel backpressure), EOF must arrive as a half-close, and small writes must not wait.
// One read per read(): NIO's default (4) let a fast socket deliver 4 MiB per read() of the relay,
// all of it held while the tunnel was full (75 MiB held by a mediator with eight streams); the relay
// asks again as soon as it has sent what it holds.
//
// The options that only set a field of NIO's channel are set synchronously by the channel's
// initializer (`setRelayedStreamOptions`): given to a bootstrap, NIO applies each through a promise,
// a future and a chain of closures per connection (`ChannelOptions.Storage.applyAllChannelOptions`),
// about 6% of a forwarded connection's CPU in perf at each end (issue 15).
extension ClientBootstrap {
    /// Sets the bootstrap's channel initializer: callers add their handlers once connected.
    public func relayedStreamOptions() -> ClientBootstrap {
        channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.setRelayedStreamOptions() }
            }
    }
}

extension ServerBootstrap {
    /// The accepted sockets' initializer must begin with `child.setRelayedStreamOptions()`.
    public func relayedStreamChildOptions() -> ServerBootstrap {
        childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
    }
}

extension Channel {
    /// What every relayed socket needs but the `tcp_nodelay` option of its bootstrap; on the
    /// channel's loop, before it is registered (from its initializer).
    public func setRelayedStreamOptions() throws {
        guard let options = syncOptions else {
            throw ChannelError.operationUnsupported
        }
        try options.setOption(ChannelOptions.autoRead, value: false)
        try options.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        try options.setOption(ChannelOptions.recvAllocator, value: RelayBuffers.allocator)
        try options.setOption(ChannelOptions.maxMessagesPerRead, value: RelayBuffers.relayedReadsPerRead)
    }
}
