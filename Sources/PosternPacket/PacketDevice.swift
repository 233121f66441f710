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

/// What happened to a packet device (wireguard-go's `tun.Event`).
public enum PacketDeviceEvent: Hashable, Sendable {
    case up
    case down
    case mtuChanged(Int)
}

public enum PacketDeviceError: Error, Hashable, Sendable, CustomStringConvertible {
    case closed
    /// A packet longer than the MTU; `written` packets before it went out.
    case packetTooLarge(size: Int, mtu: Int, written: Int)
    /// A second read while one is waiting: a device has one reader.
    case concurrentRead

    public var description: String {
        switch self {
        case .closed: return "the packet device is closed"
        case .packetTooLarge(let size, let mtu, let written):
            return "a \(size)-byte packet does not fit the MTU of \(mtu) (\(written) packets written before it)"
        case .concurrentRead: return "the packet device already has a read waiting"
        }
    }
}
