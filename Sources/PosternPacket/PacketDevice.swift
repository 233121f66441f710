import NIOCore

/// A source and sink of IP packets with no link-layer header: a tun device, a raw socket, a pcap
/// file, or `MemoryPacketDevice` in tests. Modelled on wireguard-go's `tun.Device`: packets move in
/// batches (one read returns up to `batchSize`), the device has an MTU and a name, reports events,
/// and is closed once. Whoever runs the device reads it from one task at a time.
public protocol PacketDevice: AnyObject, Sendable {
    /// The interface name (`postern0`), or what stands for it (a file name).
    var name: String { get }
    /// The most packets one `read` returns. Callers size their batches by it.
    var batchSize: Int { get }
    /// Changes arrive as `.mtuChanged` events.
    func mtu() async -> Int
    /// Waits for at least one packet and returns between 1 and `batchSize` of them, oldest first.
    /// Throws `PacketDeviceError.closed` once the device is closed.
    func read() async throws -> [ByteBuffer]
    /// Writes the packets in order. On failure the error says how many went out before it.
    func write(_ packets: [ByteBuffer]) async throws
    /// Up, down and MTU changes, for a single consumer; finishes when the device closes.
    var events: AsyncStream<PacketDeviceEvent> { get }
    /// Stops the device: pending and later reads and writes fail with `.closed`, events finish.
    func close() async
}
