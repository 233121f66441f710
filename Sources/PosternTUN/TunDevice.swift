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
/// With offloads (the default; `offloads` says what the kernel granted) the device is opened with
/// IFF_VNET_HDR and TUNSETOFFLOAD: a read may return a TCP or UDP super-packet of up to 64 KB, which
/// `GSOSegmenter` cuts into the packets a wire would carry before anyone sees them, so the rest of
/// Postern (policy, UDP channel, `--pcap`) only ever handles real packets, one kernel crossing per
/// 64 KB instead of per packet. `writePackets` merges consecutive TCP segments of one flow
/// (`TCPCoalescer`) into one write the kernel cuts again. A kernel that refuses IFF_VNET_HDR or every
/// offload leaves the device as it was without them (`offloads` empty).
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
    /// Packets dropped: the read queue was full, the kernel refused a write, or a read's offload
    /// header did not fit its packet.
    public private(set) var dropped: UInt64 = 0
    /// The offloads the kernel granted (`TUNSETOFFLOAD`); empty: none, and no virtio-net header.
    public let offloads: Offloads
    /// Whether `open` asked for offloads (false: the operator's `--tun-offload off`).
    public let offloadAsked: Bool
    /// Reads refused by `GSOSegmenter` (their header lied; also in `dropped`).
    public private(set) var offloadRefused: UInt64 = 0
    /// Super-packets read and cut into segments; writes that carried more than one packet.
    public private(set) var superPacketsRead: UInt64 = 0
    public private(set) var coalescedWrites: UInt64 = 0

    /// The `TUN_F_*` bits of linux/if_tun.h.
    public struct Offloads: OptionSet, Sendable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let checksum = Offloads(rawValue: 0x01)
        public static let tso4 = Offloads(rawValue: 0x02)
        public static let tso6 = Offloads(rawValue: 0x04)
        public static let uso4 = Offloads(rawValue: 0x20)
        public static let uso6 = Offloads(rawValue: 0x40)

        public var description: String {
            let names: [(Offloads, String)] = [(.checksum, "csum"), (.tso4, "tso4"), (.tso6, "tso6"), (.uso4, "uso4"), (.uso6, "uso6")]
            let on = names.filter { contains($0.0) }.map(\.1)
            return on.isEmpty ? "none" : on.joined(separator: ",")
        }
    }

    private let eventSink: AsyncStream<PacketDeviceEvent>.Continuation
    private let writeDescriptor: CInt
    private var channel: Channel?
    private var mtuValue: Int
    private let inbox: PacketInbox
    private var pending: [ByteBuffer] = []
    private var isClosed = false
    /// Whether every packet read or written carries a `VirtioNetHeader`.
    private var hasHeader: Bool { !offloads.isEmpty }
    /// Where reads are cut and writes merged, kept from one to the next: their storage is reused
    /// whenever nothing holds on to the packets of the previous one (event loop only).
    private var segmentScratch = ByteBuffer()
    private var coalesceScratch = ByteBuffer()
    /// Where a write's virtio-net header is put together (event loop only).
    private let headerScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: VirtioNetHeader.size, alignment: 8)

    /// What opening a device can fail with.
    public struct OpenError: Error, CustomStringConvertible {
        public var name: String
        public var errno: Int32
        public var description: String {
            let reason = errno == EPERM || errno == EACCES ? "not permitted (TUN mode needs CAP_NET_ADMIN)" : "errno \(errno)"
            return "cannot create tun device \(name): \(reason)"
        }
    }

    private init(
        name: String, descriptor: CInt, mtu: Int, batchSize: Int, queueCapacity: Int, offloads: Offloads, offloadAsked: Bool,
        eventLoop: EventLoop
    ) {
        self.name = name
        self.offloads = offloads
        self.offloadAsked = offloadAsked
        self.writeDescriptor = descriptor
        self.mtuValue = mtu
        self.batchSize = batchSize
        self.queueCapacity = queueCapacity
        self.inbox = PacketInbox(capacity: queueCapacity, batchSize: batchSize)
        self.eventLoop = eventLoop
        (events, eventSink) = AsyncStream.makeStream(of: PacketDeviceEvent.self, bufferingPolicy: .unbounded)
    }

    deinit { headerScratch.deallocate() }

    /// Creates (or attaches to) tun device `name` and starts reading it on `eventLoop`. The caller
    /// sets its MTU and brings it up through netlink; `mtu` is what the device reports until then.
    /// `offload`: ask for the virtio-net header and offloads (both ends of a tunnel may differ: the
    /// packets between them are plain either way).
    public static func open(
        name: String, mtu: Int, eventLoop: EventLoop, batchSize: Int = 64, queueCapacity: Int = 1024, offload: Bool = true
    ) -> EventLoopFuture<TunDevice> {
        var actual = [CChar](repeating: 0, count: 16)
        var granted: CUnsignedInt = 0
        var fd: CInt = -EINVAL
        if offload {
            fd = postern_tun_open_offload(name, &actual, actual.count, &granted)
            if fd >= 0, granted == 0 {
                // Without offloads the header only costs: reopen plain (the device goes with the descriptor).
                Glibc.close(fd)
                fd = -EINVAL
            }
        }
        if fd < 0 {
            granted = 0
            fd = postern_tun_open(name, &actual, actual.count)
        }
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
            offloads: Offloads(rawValue: UInt32(granted)), offloadAsked: offload, eventLoop: eventLoop)
        return NIOPipeBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.maxMessagesPerRead, value: UInt(batchSize))
            // One read returns one whole packet (a 64 KB super-packet with offloads, after its header);
            // a buffer smaller than a packet would cut it.
            .channelOption(
                ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536 + VirtioNetHeader.size)
            )
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

    /// The offload counters as `ctl mediators` and TUN_STATS show them (event loop only).
    public var offloadCounters: DeviceOffloadCounters {
        DeviceOffloadCounters(
            asked: offloadAsked, offloads: "\(offloads)", superPacketsRead: superPacketsRead, coalescedWrites: coalescedWrites,
            offloadRefused: offloadRefused)
    }

    // MARK: - On the event loop

    /// Hands every batch read from now on to `receive`, on the event loop, instead of queueing it for
    /// `read()`.
    public func setReceiver(_ receive: @escaping ([ByteBuffer]) -> Void) {
        eventLoop.preconditionInEventLoop()
        inbox.setReceiver(receive)
    }

    /// Writes one packet now. False when the device is closed or the kernel refused it (counted).
    @discardableResult
    public func writePacket(_ packet: ByteBuffer) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return false }
        guard write(packet, header: .plain) else {
            dropped &+= 1
            return false
        }
        return true
    }

    /// Writes packets now, consecutive TCP segments of one flow merged into one write when the
    /// device has TSO (`TCPCoalescer`): the kernel cuts them back into the same segments. Returns how
    /// many of `packets` were written; the others are counted as dropped.
    @discardableResult
    public func writePackets(_ packets: [ByteBuffer]) -> Int {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return 0 }
        guard offloads.contains(.tso4), packets.count > 1 else {
            return packets.reduce(0) { $0 + (writePacket($1) ? 1 : 0) }
        }
        var written = 0
        for w in TCPCoalescer.coalesce(packets, into: &coalesceScratch) {
            if write(w.packet, header: w.header) {
                written += w.count
                if w.count > 1 { coalescedWrites &+= 1 }
            } else {
                dropped &+= UInt64(w.count)
            }
        }
        return written
    }

    /// One write(2) of `packet`, behind `header` when the device takes one (gathered, not copied).
    private func write(_ packet: ByteBuffer, header: VirtioNetHeader) -> Bool {
        guard hasHeader else {
            return packet.withUnsafeReadableBytes { Glibc.write(writeDescriptor, $0.baseAddress, $0.count) } == packet.readableBytes
        }
        let scratch = headerScratch
        scratch.storeBytes(of: header.flags, toByteOffset: 0, as: UInt8.self)
        scratch.storeBytes(of: header.gsoTypeRaw, toByteOffset: 1, as: UInt8.self)
        scratch.storeBytes(of: header.headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        scratch.storeBytes(of: header.gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        scratch.storeBytes(of: header.checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        scratch.storeBytes(of: header.checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
        let written = packet.withUnsafeReadableBytes { raw -> Int in
            var vectors = (
                iovec(iov_base: scratch.baseAddress, iov_len: VirtioNetHeader.size),
                iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress), iov_len: raw.count)
            )
            return withUnsafeMutableBytes(of: &vectors) { v in
                Glibc.writev(writeDescriptor, v.baseAddress!.assumingMemoryBound(to: iovec.self), 2)
            }
        }
        return written == VirtioNetHeader.size + packet.readableBytes
    }

    /// Closes both descriptors: the device goes away.
    public func closeNow() {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return }
        isClosed = true
        channel?.close(promise: nil)
        channel = nil
        Glibc.close(writeDescriptor)
        dropped &+= UInt64(inbox.close())
        eventSink.finish()
    }

    fileprivate func arrived(_ read: ByteBuffer) {
        if hasHeader {
            guard let header = VirtioNetHeader(read, at: read.readerIndex) else {
                dropped &+= 1
                return
            }
            var packet = read
            packet.moveReaderIndex(forwardBy: VirtioNetHeader.size)
            if header == .plain || (header.gsoTypeRaw == 0 && header.flags & VirtioNetHeader.needsChecksum == 0) {
                pending.append(packet)
            } else {
                do {
                    let segments = try GSOSegmenter.split(packet, header: header, into: &segmentScratch)
                    pending.append(contentsOf: segments)
                    if segments.count > 1 {
                        superPacketsRead &+= 1
                        // Handed over now, so that the next read finds the scratch free again.
                        deliver()
                        return
                    }
                } catch {
                    offloadRefused &+= 1
                    dropped &+= 1
                }
            }
        } else {
            pending.append(read)
        }
        if pending.count >= batchSize { deliver() }
    }

    fileprivate func deliver() {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        dropped &+= UInt64(inbox.deliver(batch))
    }

    // MARK: - PacketDevice

    public func mtu() async -> Int {
        (try? await eventLoop.submit { self.mtuValue }.get()) ?? mtuValue
    }

    public func read() async throws -> [ByteBuffer] {
        try await withCheckedThrowingContinuation { continuation in
            eventLoop.execute { self.inbox.read(continuation) }
        }
    }

    public func write(_ packets: [ByteBuffer]) async throws {
        try await eventLoop.submit {
            guard !self.isClosed else { throw PacketDeviceError.closed }
            for (i, p) in packets.enumerated() where p.readableBytes > self.mtuValue {
                for q in packets.prefix(i) { self.writePacket(q) }
                throw PacketDeviceError.packetTooLarge(size: p.readableBytes, mtu: self.mtuValue, written: i)
            }
            self.writePackets(packets)
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
