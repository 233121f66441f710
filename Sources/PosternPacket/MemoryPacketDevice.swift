import NIOCore

/// One end of an in-memory pair of packet devices, like wireguard-go's `tun/tuntest`: what one end
/// writes, the other reads. Each end holds at most `queueCapacity` unread packets and drops the
/// rest, as a kernel's device queue does. Tests drive the MTU and up/down events by hand.
public actor MemoryPacketDevice: PacketDevice {
    public nonisolated let name: String
    public nonisolated let batchSize: Int
    public nonisolated let events: AsyncStream<PacketDeviceEvent>
    public let queueCapacity: Int
    /// Packets that arrived while the queue was full or the device closed.
    public private(set) var dropped = 0

    private let eventSink: AsyncStream<PacketDeviceEvent>.Continuation
    private weak var peer: MemoryPacketDevice?
    private var currentMTU: Int
    private var queue = CircularBuffer<ByteBuffer>()
    private var reader: CheckedContinuation<[ByteBuffer], Error>?
    /// Numbers reads, so a late cancellation of one read never cancels the next.
    private var readNumber = 0
    private var isClosed = false

    private init(name: String, mtu: Int, batchSize: Int, queueCapacity: Int) {
        precondition(batchSize >= 1 && queueCapacity >= 1 && mtu >= 1)
        self.name = name
        self.currentMTU = mtu
        self.batchSize = batchSize
        self.queueCapacity = queueCapacity
        (events, eventSink) = AsyncStream.makeStream(of: PacketDeviceEvent.self, bufferingPolicy: .unbounded)
        eventSink.yield(.up)
    }

    /// Two connected devices. The caller keeps both alive: an end whose peer is gone writes into
    /// nothing.
    public static func pair(
        names: (String, String) = ("mem0", "mem1"), mtu: Int = 1500, batchSize: Int = 16, queueCapacity: Int = 1024
    ) async -> (MemoryPacketDevice, MemoryPacketDevice) {
        let a = MemoryPacketDevice(name: names.0, mtu: mtu, batchSize: batchSize, queueCapacity: queueCapacity)
        let b = MemoryPacketDevice(name: names.1, mtu: mtu, batchSize: batchSize, queueCapacity: queueCapacity)
        await a.connect(to: b)
        await b.connect(to: a)
        return (a, b)
    }

    private func connect(to peer: MemoryPacketDevice) { self.peer = peer }

    public func mtu() -> Int { currentMTU }

    public func read() async throws -> [ByteBuffer] {
        guard !isClosed else { throw PacketDeviceError.closed }
        if !queue.isEmpty { return takeBatch() }
        guard reader == nil else { throw PacketDeviceError.concurrentRead }
        readNumber += 1
        let number = readNumber
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    reader = continuation
                }
            }
        } onCancel: {
            Task { await self.cancelRead(number) }
        }
    }

    public func write(_ packets: [ByteBuffer]) async throws {
        guard !isClosed else { throw PacketDeviceError.closed }
        let mtu = currentMTU
        let fitting = packets.prefix { $0.readableBytes <= mtu }
        await peer?.arrive(Array(fitting))
        if fitting.count < packets.count {
            throw PacketDeviceError.packetTooLarge(size: packets[fitting.count].readableBytes, mtu: mtu, written: fitting.count)
        }
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        dropped += queue.count
        queue.removeAll()
        reader?.resume(throwing: PacketDeviceError.closed)
        reader = nil
        eventSink.finish()
    }

    /// Changes the MTU and reports it, as `ip link set mtu` would.
    public func setMTU(_ mtu: Int) {
        precondition(mtu >= 1)
        currentMTU = mtu
        eventSink.yield(.mtuChanged(mtu))
    }

    /// Reports the link going up or down.
    public func setUp(_ up: Bool) {
        eventSink.yield(up ? .up : .down)
    }

    private func arrive(_ packets: [ByteBuffer]) {
        guard !isClosed else {
            dropped += packets.count
            return
        }
        let room = max(0, queueCapacity - queue.count)
        queue.append(contentsOf: packets.prefix(room))
        dropped += max(0, packets.count - room)
        if let reader, !queue.isEmpty {
            self.reader = nil
            reader.resume(returning: takeBatch())
        }
    }

    private func takeBatch() -> [ByteBuffer] {
        var batch: [ByteBuffer] = []
        batch.reserveCapacity(min(batchSize, queue.count))
        while batch.count < batchSize, let packet = queue.popFirst() { batch.append(packet) }
        return batch
    }

    private func cancelRead(_ number: Int) {
        guard number == readNumber else { return }
        reader?.resume(throwing: CancellationError())
        reader = nil
    }
}
