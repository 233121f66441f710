import CPosternShims
import NIOCore
import NIOPosix
import PosternPacket

#if canImport(Glibc)
    import Glibc
#endif

/// A Linux tun device (IFF_TUN | IFF_NO_PI: bare IP packets) as a `PacketDevice`. NIO reads it: the
/// descriptor is a pipe-like channel on `eventLoop`, each read(2) returns one packet, and the packets
/// of one wake-up are handed over as one batch (up to `batchSize`). Writes are one write(2) per
/// packet on a duplicate of the descriptor, never through NIO's stream writer, which would merge
/// queued packets into one writev(2) and so into one corrupt packet. A write the kernel refuses is a
/// dropped packet, as on any interface.
///
/// The device is not persistent: it disappears, with its addresses and routes, when the descriptors
/// close, also when the process is killed. Lives on `eventLoop`; the `PacketDevice` methods may be
/// called from anywhere.
public final class TunDevice: PacketDevice, @unchecked Sendable {
    public let name: String
    public let batchSize: Int
    public let events: AsyncStream<PacketDeviceEvent>
    public let eventLoop: EventLoop
    /// Unread packets kept for `read()` when no receiver is set; more are dropped.
    public let queueCapacity: Int
    /// Packets dropped: the read queue was full, or the kernel refused a write.
    public private(set) var dropped: UInt64 = 0

    private let eventSink: AsyncStream<PacketDeviceEvent>.Continuation
    private let writeDescriptor: CInt
    private var channel: Channel?
    private var mtuValue: Int
    private var receiver: (([ByteBuffer]) -> Void)?
    private var queue = CircularBuffer<ByteBuffer>()
    private var reader: CheckedContinuation<[ByteBuffer], Error>?
    private var pending: [ByteBuffer] = []
    private var isClosed = false

    /// What opening a device can fail with.
    public struct OpenError: Error, CustomStringConvertible {
        public var name: String
        public var errno: Int32
        public var description: String {
            let reason = errno == EPERM || errno == EACCES ? "not permitted (TUN mode needs CAP_NET_ADMIN)" : "errno \(errno)"
            return "cannot create tun device \(name): \(reason)"
        }
    }

    private init(name: String, descriptor: CInt, mtu: Int, batchSize: Int, queueCapacity: Int, eventLoop: EventLoop) {
        self.name = name
        self.writeDescriptor = descriptor
        self.mtuValue = mtu
        self.batchSize = batchSize
        self.queueCapacity = queueCapacity
        self.eventLoop = eventLoop
        (events, eventSink) = AsyncStream.makeStream(of: PacketDeviceEvent.self, bufferingPolicy: .unbounded)
    }

    /// Creates (or attaches to) tun device `name` and starts reading it on `eventLoop`. The caller
    /// sets its MTU and brings it up through netlink; `mtu` is what the device reports until then.
    public static func open(
        name: String, mtu: Int, eventLoop: EventLoop, batchSize: Int = 64, queueCapacity: Int = 1024
    ) -> EventLoopFuture<TunDevice> {
        var actual = [CChar](repeating: 0, count: 16)
        let fd = postern_tun_open(name, &actual, actual.count)
        guard fd >= 0 else { return eventLoop.makeFailedFuture(OpenError(name: name, errno: -fd)) }
        let writeFD = dup(fd)
        guard writeFD >= 0 else {
            let code = errno
            Glibc.close(fd)
            return eventLoop.makeFailedFuture(OpenError(name: name, errno: code))
        }
        let kernelName = String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let device = TunDevice(
            name: kernelName, descriptor: writeFD, mtu: mtu, batchSize: batchSize, queueCapacity: queueCapacity,
            eventLoop: eventLoop)
        return NIOPipeBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.maxMessagesPerRead, value: UInt(batchSize))
            // One read returns one whole packet; a buffer smaller than a packet would cut it.
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { channel in channel.pipeline.addHandler(Reader(device: device)) }
            .takingOwnershipOfDescriptor(input: fd)
            .map { channel in
                device.channel = channel
                device.eventSink.yield(.up)
                return device
            }
            .flatMapErrorThrowing { error in
                // A failed registration leaves the descriptor ours (NIOPipeBootstrap's contract).
                Glibc.close(fd)
                Glibc.close(writeFD)
                throw error
            }
    }

    // MARK: - On the event loop

    /// Hands every batch read from now on to `receive`, on the event loop, instead of queueing it for
    /// `read()`.
    public func setReceiver(_ receive: @escaping ([ByteBuffer]) -> Void) {
        eventLoop.preconditionInEventLoop()
        receiver = receive
        if !queue.isEmpty {
            let queued = Array(queue)
            queue.removeAll()
            receive(queued)
        }
    }

    /// Writes one packet now. False when the device is closed or the kernel refused it (counted).
    @discardableResult
    public func writePacket(_ packet: ByteBuffer) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return false }
        let written = packet.withUnsafeReadableBytes { Glibc.write(writeDescriptor, $0.baseAddress, $0.count) }
        guard written == packet.readableBytes else {
            dropped &+= 1
            return false
        }
        return true
    }

    /// Closes both descriptors: the device goes away.
    public func closeNow() {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return }
        isClosed = true
        channel?.close(promise: nil)
        channel = nil
        Glibc.close(writeDescriptor)
        reader?.resume(throwing: PacketDeviceError.closed)
        reader = nil
        dropped &+= UInt64(queue.count)
        queue.removeAll()
        eventSink.finish()
    }

    fileprivate func arrived(_ packet: ByteBuffer) {
        pending.append(packet)
        if pending.count >= batchSize { deliver() }
    }

    fileprivate func deliver() {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        if let receiver {
            receiver(batch)
            return
        }
        let room = max(0, queueCapacity - queue.count)
        queue.append(contentsOf: batch.prefix(room))
        dropped &+= UInt64(max(0, batch.count - room))
        if let reader, !queue.isEmpty {
            self.reader = nil
            reader.resume(returning: takeBatch())
        }
    }

    private func takeBatch() -> [ByteBuffer] {
        var batch: [ByteBuffer] = []
        while batch.count < batchSize, let p = queue.popFirst() { batch.append(p) }
        return batch
    }

    // MARK: - PacketDevice

    public func mtu() async -> Int {
        (try? await eventLoop.submit { self.mtuValue }.get()) ?? mtuValue
    }

    public func read() async throws -> [ByteBuffer] {
        try await withCheckedThrowingContinuation { continuation in
            eventLoop.execute {
                if self.isClosed {
                    continuation.resume(throwing: PacketDeviceError.closed)
                } else if !self.queue.isEmpty {
                    continuation.resume(returning: self.takeBatch())
                } else if self.reader != nil {
                    continuation.resume(throwing: PacketDeviceError.concurrentRead)
                } else {
                    self.reader = continuation
                }
            }
        }
    }

    public func write(_ packets: [ByteBuffer]) async throws {
        try await eventLoop.submit {
            guard !self.isClosed else { throw PacketDeviceError.closed }
            for (i, p) in packets.enumerated() where p.readableBytes > self.mtuValue {
                for q in packets.prefix(i) { self.writePacket(q) }
                throw PacketDeviceError.packetTooLarge(size: p.readableBytes, mtu: self.mtuValue, written: i)
            }
            for p in packets { self.writePacket(p) }
        }.get()
    }

    public func close() async {
        try? await eventLoop.submit { self.closeNow() }.get()
    }

    /// Reads the descriptor: one channelRead per packet, one batch per wake-up.
    private final class Reader: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let device: TunDevice

        init(device: TunDevice) { self.device = device }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            device.arrived(unwrapInboundIn(data))
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            device.deliver()
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            // EIO while the device is down, or the like: the packet is lost, the device goes on.
            device.dropped &+= 1
        }
    }
}
