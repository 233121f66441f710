import NIOCore
import PosternPacket
import PosternTunnel

/// Carries IP packets between a tun device (or the raw LAN presence's socket) and the session's paths (docs/protocol.md §10), through
/// the packet policy in both directions, clamping the MSS of TCP SYNs to the devices' MTU. The
/// mediator's device faces the LAN, the server's the remote side; `side` says which direction is
/// which. Lives on the session's event loop.
public final class TunRelay {
    public enum Side: Sendable {
        /// The device is the mediator's: what it reads comes from the LAN.
        case mediator
        /// The device is the server's: what it reads goes to the LAN.
        case server
    }

    public let device: any RelayedPacketDevice
    public let policy: PacketPolicy
    public let side: Side
    private let path: UDPChannelDatagramPath
    private var relayCounters = PacketCounters()
    /// What the relay carried and dropped, with the tun device's offload counters (none for the raw
    /// LAN presence's socket).
    public var counters: PacketCounters {
        var c = relayCounters
        c.offload = (device as? TunDevice)?.offloadCounters
        return c
    }
    /// Told about drops at the 1st, 10th, 100th… of each reason, so a log shows them without
    /// flooding (the mediator logs them; the server shows its counters in `ctl mediators`).
    public var onDrops: ((_ reason: String, _ count: UInt64) -> Void)?
    private var stopped = false
    /// `--pcap`: told about every packet the device carried, as it read or was given it (the
    /// packets the policy dropped included on the way in, since the device did carry them).
    public var onPacket: ((ByteBuffer) -> Void)?
    /// SYNs crossing TUN mode have their MSS lowered to this (`TCPMSSClamp`).
    private let maxMSS: UInt16

    public init(device: any RelayedPacketDevice, policy: PacketPolicy, side: Side, path: UDPChannelDatagramPath) {
        self.device = device
        self.policy = policy
        self.side = side
        self.path = path
        self.maxMSS = TCPMSSClamp.maxMSS(forMTU: policy.mtu)
    }

    /// Starts both directions: device batches to the tunnel, tunnel packets (UDP channel PACKET
    /// messages here, PACKET frames through `fromTunnel`) to the device.
    public func start() {
        device.eventLoop.preconditionInEventLoop()
        path.packetReceiver = { [weak self] in self?.fromTunnel($0) }
        device.setReceiver { [weak self] batch in
            guard let self else { return }
            for packet in batch { self.fromDevice(packet) }
        }
    }

    /// A packet the device produced: to the tunnel if the policy lets it pass.
    func fromDevice(_ packet: ByteBuffer) {
        guard !stopped else { return }
        onPacket?(packet)
        let drop = side == .mediator ? policy.checkFromLAN(packet) : policy.checkToLAN(packet)
        if let drop {
            dropped(drop.rawValue)
            if drop == .tooLarge { answerTooLarge(packet) }
            return
        }
        var packet = packet
        TCPMSSClamp.clamp(&packet, maxMSS: maxMSS)
        if path.sendPacket(packet) {
            if side == .mediator { relayCounters.fromLAN &+= 1 } else { relayCounters.toLAN &+= 1 }
        } else {
            dropped("path")
        }
    }

    /// A packet from the tunnel (either path): to the device if the policy lets it pass. Packets
    /// wait for the end of the event loop's pass, so that what one receive batch brought (a
    /// recvmmsg(2) of the UDP channel, a read of the TCP channel) reaches the device together and
    /// consecutive TCP segments leave in one write (`TunDevice.writePackets`); nothing waits for a
    /// later pass or a timer.
    public func fromTunnel(_ packet: ByteBuffer) {
        guard !stopped else { return }
        let drop = side == .mediator ? policy.checkToLAN(packet) : policy.checkFromLAN(packet)
        if let drop {
            dropped(drop.rawValue)
            return
        }
        var packet = packet
        TCPMSSClamp.clamp(&packet, maxMSS: maxMSS)
        // `--pcap` records packets as they are handed to the device: segments, never the merged
        // super-packets the device is given.
        onPacket?(packet)
        toDevice.append(packet)
        guard !flushScheduled else { return }
        flushScheduled = true
        device.eventLoop.execute { [self] in
            flushScheduled = false
            flushToDevice()
        }
    }

    private var toDevice: [ByteBuffer] = []
    private var flushScheduled = false

    private func flushToDevice() {
        guard !stopped, !toDevice.isEmpty else { return }
        let batch = toDevice
        toDevice.removeAll(keepingCapacity: true)
        let written = device.writePackets(batch)
        if side == .mediator { relayCounters.toLAN &+= UInt64(written) } else { relayCounters.fromLAN &+= UInt64(written) }
        for _ in written..<batch.count { dropped("device") }
    }

    /// A packet from the device larger than TUN mode carries (the device's MTU was raised above the
    /// negotiated one, or the kernel handed over more than the MTU): with DF set its sender gets ICMP
    /// "fragmentation needed" naming the tunnel's MTU, written back into the device toward it, at most
    /// `icmpErrorsPerSecond` a second (RFC 1812 §4.3.2.8), so a flood of oversize packets cannot turn
    /// into a flood of errors. Without DF the packet stays dropped (counted as `tooLarge`): the
    /// kernel fragments before the device, so only a misconfigured device gets here.
    private func answerTooLarge(_ packet: ByteBuffer) {
        // IPv6 has no DF: every oversize IPv6 packet gets "packet too big".
        guard
            let error = ICMPFragmentationNeeded.make(for: packet, nextHopMTU: policy.mtu)
                ?? ICMPv6PacketTooBig.make(for: packet, mtu: policy.mtu)
        else { return }
        let now = NIODeadline.now()
        if now - icmpWindowStart >= .seconds(1) {
            icmpWindowStart = now
            icmpInWindow = 0
        }
        guard icmpInWindow < Self.icmpErrorsPerSecond else {
            relayCounters.drop("icmpRateLimit")
            return
        }
        icmpInWindow += 1
        if device.writePacket(error) { relayCounters.fragmentationNeeded &+= 1 }
    }

    /// ICMP errors TUN mode generates per second at most (Linux's default `icmp_msgs_per_sec` is 1,000
    /// for the whole host; one tunnel needs far fewer).
    public static let icmpErrorsPerSecond = 100
    private var icmpWindowStart = NIODeadline.uptimeNanoseconds(0)
    private var icmpInWindow = 0

    private func dropped(_ reason: String) {
        relayCounters.drop(reason)
        let n = relayCounters.dropped[reason] ?? 0
        var m = n
        while m >= 10, m % 10 == 0 { m /= 10 }
        if m == 1 { onDrops?(reason, n) }
    }

    /// Stops relaying and closes the device.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        path.packetReceiver = nil
        device.closeNow()
    }
}
