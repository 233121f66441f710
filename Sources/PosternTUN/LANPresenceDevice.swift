import CPosternShims
import Foundation
import NIOCore
import NIOPosix
import PosternPacket
import PosternWire

#if canImport(Glibc)
    import Glibc
#endif

/// The raw LAN presence (issue 11) as a packet device: an `AF_PACKET` socket on the LAN interface
/// with `LANPresenceFilter` attached in the kernel, driven by the pure `LANPresence`. What it reads
/// are the IP packets LAN hosts sent to the remote address (ARP is answered inside); what it is
/// given goes onto the LAN as Ethernet frames to the next hop's MAC. The host's routing, sysctls and
/// neighbour tables are not touched; the socket vanishes with the process.
///
/// One thread blocks in poll(2) and reads up to `batchSize` frames per recvmmsg(2), then hands the
/// batch to the event loop and waits until it is taken, so a slow loop makes the kernel drop frames
/// at the socket (counted by it) instead of this process queueing without bound. Everything else
/// lives on `eventLoop`; the `PacketDevice` methods may be called from anywhere.
public final class LANPresenceDevice: RelayedPacketDevice, @unchecked Sendable {
    public let name: String
    public let batchSize: Int
    public let events: AsyncStream<PacketDeviceEvent>
    public let eventLoop: EventLoop
    /// Frames the reader received and the recvmmsg(2) calls it took: their ratio is the batch size
    /// the load produced (for the log and the bench).
    public private(set) var framesRead: UInt64 = 0
    public private(set) var reads: UInt64 = 0
    /// Frames the kernel refused to send (a full device queue).
    public private(set) var sendFailures: UInt64 = 0
    /// Frames whose offload header or super-packet did not add up (`ReceiveOffload`), dropped.
    public private(set) var offloadFailures: UInt64 = 0
    /// The counters of every presence (IPv4's ARP and IPv6's NDP in the same fields), added up.
    public var counters: LANPresence.Counters {
        presences.dropFirst().reduce(presences[0].counters) { total, p in
            var t = total
            let c = p.counters
            t.arpAnswered &+= c.arpAnswered
            t.arpLearned &+= c.arpLearned
            t.arpIgnored &+= c.arpIgnored
            t.framesToRemote &+= c.framesToRemote
            t.framesIgnored &+= c.framesIgnored
            t.framesSent &+= c.framesSent
            t.unreachable &+= c.unreachable
            t.queueFull &+= c.queueFull
            return t
        }
    }

    /// One per address of the remote side (an IPv4 one, an IPv6 one).
    private var presences: [LANPresence]
    private let socket: CInt
    private let wake: CInt
    private let mtuValue: Int
    /// Up to 1,024 unread packets wait for `read()` when no receiver is set; more are dropped.
    private let inbox: PacketInbox
    private var ticker: RepeatedTask?
    private var isClosed = false
    private let slot: Int

    /// What opening the socket can fail with.
    public struct OpenError: Error, CustomStringConvertible {
        public var interface: String
        public var errno: Int32
        public var description: String {
            let reason =
                errno == EPERM || errno == EACCES
                ? "not permitted: the raw LAN presence needs CAP_NET_RAW, which this process lacks"
                : String(cString: strerror(errno))
            return "cannot open a packet socket on \(interface): \(reason)"
        }
    }

    private init(
        name: String, socket: CInt, wake: CInt, presences: [LANPresence], mtu: Int, slot: Int, batchSize: Int, eventLoop: EventLoop
    ) {
        self.name = name
        self.socket = socket
        self.wake = wake
        self.presences = presences
        self.mtuValue = mtu
        self.slot = slot
        self.batchSize = batchSize
        self.inbox = PacketInbox(capacity: 1024, batchSize: batchSize)
        self.eventLoop = eventLoop
        (events, eventSink) = AsyncStream.makeStream(of: PacketDeviceEvent.self, bufferingPolicy: .unbounded)
    }

    private let eventSink: AsyncStream<PacketDeviceEvent>.Continuation

    /// Opens the socket on interface `interface` (index `ifindex`), announces the address and starts
    /// reading. Call on `eventLoop`.
    public static func open(
        interface: String, ifindex: UInt32, presence: LANPresence, mtu: Int, eventLoop: EventLoop,
        batchSize: Int = 64
    ) throws -> LANPresenceDevice {
        try open(interface: interface, ifindex: ifindex, presences: [presence], mtu: mtu, eventLoop: eventLoop, batchSize: batchSize)
    }

    /// Opens one socket speaking for every address in `presences` (at most one per family): the
    /// kernel filter passes frames for any of them, the socket joins each IPv6 address's
    /// solicited-node group, and each address is announced.
    public static func open(
        interface: String, ifindex: UInt32, presences: [LANPresence], mtu: Int, eventLoop: EventLoop,
        batchSize: Int = 64
    ) throws -> LANPresenceDevice {
        eventLoop.preconditionInEventLoop()
        guard let filter = LANPresenceFilter(addresses: presences.map(\.address)) else {
            throw OpenError(interface: interface, errno: EAFNOSUPPORT)
        }
        let program = filter.instructions.map { sock_filter(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        // 4 MiB: a burst of a fast LAN host waits here while the loop is busy (SO_RCVBUFFORCE needs
        // CAP_NET_ADMIN; without it the kernel caps SO_RCVBUF at net.core.rmem_max).
        let fd = program.withUnsafeBufferPointer {
            postern_packet_open(Int32(ifindex), $0.baseAddress, UInt16($0.count), 4 << 20)
        }
        guard fd >= 0 else { throw OpenError(interface: interface, errno: -fd) }
        for group in presences.compactMap(\.multicastGroup) {
            let joined = group.withUnsafeBufferPointer { postern_packet_add_multicast(fd, Int32(ifindex), $0.baseAddress) }
            guard joined == 0 else {
                Glibc.close(fd)
                throw OpenError(interface: interface, errno: -joined)
            }
        }
        let wake = postern_wake_open()
        guard wake >= 0 else {
            Glibc.close(fd)
            throw OpenError(interface: interface, errno: -wake)
        }
        let device = LANPresenceDevice(
            name: interface, socket: fd, wake: wake, presences: presences, mtu: mtu, slot: Self.slot,
            batchSize: batchSize, eventLoop: eventLoop)
        for p in presences { device.send(p.announcement) }
        device.ticker = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            device.tick()
        }
        let thread = Thread { device.readLoop() }
        thread.name = "postern-lan-presence"
        thread.start()
        device.eventSink.yield(.up)
        return device
    }

    /// Bytes read per frame: a 64 KiB super-packet (GRO, or a veth peer's GSO) after its
    /// virtio_net_hdr and Ethernet header, and a VLAN tag.
    static let slot = 65_536 + ReceiveOffload.headerLength + 18

    // MARK: - The reader thread

    private func readLoop() {
        let count = batchSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: slot * count, alignment: 16)
        let lengths = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: count)
        defer {
            buffer.deallocate()
            lengths.deallocate()
            // The reader closes the descriptors once it stopped using them; the loop sends nothing
            // after `closeNow`, so no other user remains.
            Glibc.close(socket)
            Glibc.close(wake)
        }
        let allocator = ByteBufferAllocator()
        while true {
            let n = postern_packet_receive(
                socket, wake, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), slot, UInt32(count), lengths.baseAddress)
            guard n > 0 else { return }  // woken to stop, or the socket failed (the interface went away)
            var batch: [ByteBuffer] = []
            batch.reserveCapacity(Int(n))
            for i in 0..<Int(n) where lengths[i] > 0 {
                var frame = allocator.buffer(capacity: Int(lengths[i]))
                frame.writeBytes(UnsafeRawBufferPointer(start: buffer.baseAddress! + i * slot, count: Int(lengths[i])))
                batch.append(frame)
            }
            let frames = batch
            let taken = eventLoop.submit { [self] () -> Bool in
                guard !isClosed else { return false }
                reads &+= 1
                framesRead &+= UInt64(n)
                arrived(frames)
                return true
            }
            guard (try? taken.wait()) == true else { return }
        }
    }

    // MARK: - On the event loop

    private func arrived(_ frames: [ByteBuffer]) {
        let now = NIODeadline.now()
        var packets: [ByteBuffer] = []
        for read in frames {
            let resolved = ReceiveOffload.frames(read)
            if resolved.isEmpty { offloadFailures &+= 1 }
            for frame in resolved {
                let etherType = frame.getInteger(at: frame.readerIndex + 12, as: UInt16.self) ?? 0
                let i = presences.firstIndex { $0.handles(etherType: etherType) } ?? 0
                perform(presences[i].frameFromLAN(frame, now: now), into: &packets)
            }
        }
        deliver(packets)
    }

    private func tick() {
        guard !isClosed else { return }
        var packets: [ByteBuffer] = []
        let now = NIODeadline.now()
        for i in presences.indices { perform(presences[i].tick(now: now), into: &packets) }
        deliver(packets)
    }

    private func perform(_ actions: [LANPresence.Action], into packets: inout [ByteBuffer]) {
        for action in actions {
            switch action {
            case .sendFrame(let frame): send(frame)
            case .toRemote(let packet): packets.append(packet)
            }
        }
    }

    private func send(_ frame: [UInt8]) {
        // After an all-zero virtio_net_hdr: no offload asked, the frame is complete.
        let framed = Self.noOffload + frame
        let sent = framed.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if sent != framed.count { sendFailures &+= 1 }
    }

    private static let noOffload = [UInt8](repeating: 0, count: ReceiveOffload.headerLength)

    private func deliver(_ packets: [ByteBuffer]) {
        guard !packets.isEmpty else { return }
        _ = inbox.deliver(packets)
    }

    public func setReceiver(_ receive: @escaping ([ByteBuffer]) -> Void) {
        eventLoop.preconditionInEventLoop()
        inbox.setReceiver(receive)
    }

    @discardableResult
    public func writePacket(_ packet: ByteBuffer) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return false }
        let before = sendFailures
        var packets: [ByteBuffer] = []
        let isIPv6 = packet.getInteger(at: packet.readerIndex, as: UInt8.self).map { $0 >> 4 == 6 } ?? false
        let i = presences.firstIndex { $0.address.isIPv6 == isIPv6 } ?? 0
        perform(presences[i].packetToLAN(packet, now: .now()), into: &packets)
        // An ICMP error (no route) goes back to the remote side like a packet read from the LAN.
        deliver(packets)
        return sendFailures == before
    }

    public func closeNow() {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return }
        isClosed = true
        ticker?.cancel()
        ticker = nil
        var one: UInt64 = 1
        _ = Glibc.write(wake, &one, 8)
        _ = inbox.close()
        eventSink.finish()
    }

    // MARK: - PacketDevice

    public func mtu() async -> Int { mtuValue }

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
            for p in packets { self.writePacket(p) }
        }.get()
    }

    public func close() async {
        try? await eventLoop.submit { self.closeNow() }.get()
    }
}
