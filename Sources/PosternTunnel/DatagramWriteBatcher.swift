import NIOCore
import NIOPosix
import PosternCore

/// Writes datagrams to one UDP socket and flushes once per pass of its event loop, not once per
/// datagram: everything a pass queues (a read batch's worth, `RelayBuffers.datagramBatch` datagrams per
/// read of each busy socket) leaves in one `sendmmsg(2)`, which NIO issues when a flush finds several
/// datagrams pending. The flush runs as a task of the same pass, after the loop has handled every
/// socket that was ready, so no datagram waits for a later event: what a lone datagram loses is one
/// task hop, not a timer.
///
/// With `segmentation`, runs of equal-sized datagrams to one destination (`UDPSegmentRuns`) are
/// copied into one buffer and written as one UDP GSO datagram: the kernel passes them down its stack,
/// and through a forwarding gateway, as one, and cuts them back into the same datagrams at the end.
/// If the kernel refuses a GSO write (an interface without checksum offload, an MTU below the
/// segment size), segmentation stops for this socket; that write's datagrams are lost, as a router
/// would lose them.
///
/// Lives on the channel's event loop; every call must come from it.
public final class DatagramWriteBatcher {
    private let channel: Channel
    private var segmentation: UDPSegmentRuns?
    private var pending: [AddressedEnvelope<ByteBuffer>] = []
    private var flushScheduled = false
    /// Datagrams written and flushes issued: their ratio is the batch size actually reached.
    public private(set) var written: UInt64 = 0
    public private(set) var flushes: UInt64 = 0
    /// GSO writes made, and refused by the kernel (the first refusal turns segmentation off).
    public private(set) var segmentedWrites: UInt64 = 0
    public private(set) var segmentationFailures: UInt64 = 0

    /// `segmentation`: coalesce runs of datagrams into UDP GSO writes (Linux only; ignored elsewhere).
    public init(channel: Channel, segmentation: UDPSegmentRuns? = nil) {
        self.channel = channel
        self.segmentation = System.supportsUDPSegmentationOffload ? segmentation : nil
    }

    /// Whether GSO writes are still made.
    public var isSegmenting: Bool { segmentation != nil }

    /// Queues `envelope` for the socket; the pass's flush sends it.
    public func write(_ envelope: AddressedEnvelope<ByteBuffer>) {
        channel.eventLoop.assertInEventLoop()
        written &+= 1
        if segmentation != nil {
            pending.append(envelope)
        } else {
            channel.write(envelope, promise: nil)
        }
        guard !flushScheduled else { return }
        flushScheduled = true
        channel.eventLoop.execute { [self] in
            flushScheduled = false
            flush()
        }
    }

    private func flush() {
        flushes &+= 1
        if let segmentation, !pending.isEmpty {
            let queued = pending
            pending.removeAll(keepingCapacity: true)
            let runs = segmentation.runs(sizes: queued.map(\.data.readableBytes), destinations: queued.map(\.remoteAddress))
            for run in runs {
                guard run.count > 1 else {
                    channel.write(queued[run.lowerBound], promise: nil)
                    continue
                }
                let segment = queued[run.lowerBound].data.readableBytes
                var coalesced = channel.allocator.buffer(capacity: run.reduce(0) { $0 + queued[$1].data.readableBytes })
                for i in run { coalesced.writeImmutableBuffer(queued[i].data) }
                let promise = channel.eventLoop.makePromise(of: Void.self)
                promise.futureResult.whenFailure { [self] error in
                    // What the kernel says when it will not segment; a refused or unreachable peer
                    // (ECONNREFUSED after an ICMP error) or a closed socket says nothing about GSO.
                    guard let error = error as? IOError, [EIO, EINVAL, EOPNOTSUPP].contains(error.errnoCode) else { return }
                    segmentationFailures &+= 1
                    self.segmentation = nil
                }
                segmentedWrites &+= 1
                channel.write(
                    AddressedEnvelope(
                        remoteAddress: queued[run.lowerBound].remoteAddress, data: coalesced,
                        metadata: .init(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: segment)),
                    promise: promise)
            }
        }
        channel.flush()
    }
}
