/// Which of the datagrams queued for one UDP socket can leave as one UDP GSO write (`UDP_SEGMENT`,
/// Linux 4.18): a run of datagrams to the same destination, all of one size except a last, shorter
/// one, that the kernel cuts back into the same datagrams after passing them down its stack (and
/// through a forwarding gateway) as one. A lone datagram, or one of another size or destination,
/// is its own run. Pure: the writer (`DatagramWriteBatcher`) asks, and copies each run into one buffer.
public struct UDPSegmentRuns: Sendable {
    /// The kernel's limit of segments per GSO write (`UDP_MAX_SEGMENTS`).
    public static let kernelMaxSegments = 64
    /// The most payload one UDP write may carry.
    public static let maxPayload = 65_507

    /// The largest segment to coalesce: one datagram with its IP and UDP headers must fit the
    /// interface's MTU, or the kernel refuses the whole write.
    public var maxSegmentSize: Int
    public var maxSegments: Int

    public init(maxSegmentSize: Int, maxSegments: Int = UDPSegmentRuns.kernelMaxSegments) {
        self.maxSegmentSize = maxSegmentSize
        self.maxSegments = min(maxSegments, Self.kernelMaxSegments)
    }

    /// The runs of `sizes` (datagram lengths in queue order, with their destinations), covering every
    /// index once, in order.
    public func runs<Destination: Equatable>(sizes: [Int], destinations: [Destination]) -> [Range<Int>] {
        precondition(sizes.count == destinations.count, "one destination per datagram")
        var runs: [Range<Int>] = []
        var start = 0
        while start < sizes.count {
            let size = sizes[start]
            var end = start + 1
            if size > 0, size <= maxSegmentSize {
                var total = size
                while end < sizes.count, end - start < maxSegments, destinations[end] == destinations[start],
                    sizes[end] > 0, sizes[end] <= size, total + sizes[end] <= Self.maxPayload
                {
                    total += sizes[end]
                    end += 1
                    // A shorter datagram can only be the last segment.
                    if sizes[end - 1] < size { break }
                }
            }
            runs.append(start..<end)
            start = end
        }
        return runs
    }
}
