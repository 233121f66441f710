import NIOCore
import PosternWire

/// The raw LAN presence of issue 11 as a pure state machine: the remote side's address speaks on the
/// LAN at layer 2 through this host's MAC, without a tun device, routes or sysctls. Frames captured
/// on the LAN interface come in (`frameFromLAN`), packets from the remote side go out
/// (`packetToLAN`), time passes (`tick`); each returns what to send: Ethernet frames onto the LAN,
/// IP packets to the remote side.
///
/// It answers ARP requests for the address, announces the address with a gratuitous ARP, and finds
/// the MAC of each packet's next hop (the destination when on the LAN, else the gateway) by ARP,
/// keeping up to `maxQueued` packets per neighbour while it asks. A neighbour that does not answer
/// `attempts` requests a second apart gets its queued packets back as ICMP host unreachable. Only
/// replies to its own questions teach it a MAC, and a request for the address teaches the asker's
/// MAC only when no fresh entry says otherwise, so an unsolicited forged reply changes nothing.
///
/// An IPv6 address works the same way with neighbour discovery (RFC 4861, `NeighbourDiscovery`) in
/// ARP's place: solicitations for the address are answered, an unsolicited advertisement announces
/// it, next hops (the destination in the LAN's prefix, else the gateway's link-local address) are
/// resolved with its own solicitations, and only advertisements answering them teach a MAC. One
/// presence speaks for one address; a dual-stack remote side has two. Pure: time is an argument.
public struct LANPresence: Sendable {
    public typealias Prefix = MediatorEnvironment.AddressPrefix

    /// What to do.
    public enum Action: Hashable, Sendable {
        /// Send this Ethernet frame on the LAN interface.
        case sendFrame([UInt8])
        /// Hand this IP packet to the remote side (through the packet policy, like a tun device's).
        case toRemote(ByteBuffer)
    }

    /// What happened to frames and packets, by reason (for the log and the tests).
    public struct Counters: Hashable, Sendable {
        public var arpAnswered: UInt64 = 0
        public var arpLearned: UInt64 = 0
        /// ARP that teaches nothing: replies nobody asked for (forged or late), requests for the
        /// address from the address itself (a conflict), malformed ARP.
        public var arpIgnored: UInt64 = 0
        public var framesToRemote: UInt64 = 0
        /// Frames that are not for the address at this MAC (another MAC, not IPv4 or ARP, truncated).
        public var framesIgnored: UInt64 = 0
        public var framesSent: UInt64 = 0
        /// Packets whose neighbour did not answer ARP, or that had no next hop.
        public var unreachable: UInt64 = 0
        /// Packets dropped because their neighbour's queue, or the number of neighbours being asked, was full.
        public var queueFull: UInt64 = 0
        public init() {}
    }

    private struct Resolution: Sendable {
        var packets: [ByteBuffer]
        var attempts: Int
        var nextTry: NIODeadline
    }

    /// Packets kept per neighbour while ARP asks for it (Linux keeps a few too: `unres_qlen`).
    public static let maxQueued = 8
    /// Neighbours asked for at once; packets to more are dropped until one resolves or fails.
    public static let maxResolving = 64
    /// ARP requests sent before a neighbour counts as unreachable (Linux: `mcast_solicit` 3).
    public static let attempts = 3
    public static let retryInterval = TimeAmount.seconds(1)

    /// The remote side's address.
    public let address: IPAddress
    /// This host's MAC on the LAN interface: the remote address's MAC for the LAN's hosts.
    public let mac: [UInt8]
    /// The LAN's prefix: destinations in it are on-link.
    public let lan: Prefix
    /// This host's own address on the LAN: where ICMP errors come from.
    public let hostAddress: IPAddress
    /// The next hop for destinations outside the LAN (the interface's default gateway), if any.
    public let gateway: IPAddress?
    public private(set) var counters = Counters()
    private var neighbours: NeighbourCache
    private var resolving: [IPAddress: Resolution] = [:]
    /// When a fresh entry was last asked to confirm itself (unicast ARP before it expires).
    private var refreshed: [IPAddress: NIODeadline] = [:]

    public init(
        address: IPAddress, mac: [UInt8], lan: Prefix, hostAddress: IPAddress, gateway: IPAddress?,
        neighbourLifetime: TimeAmount = .seconds(60)
    ) {
        self.address = address
        self.mac = mac
        self.lan = lan.network
        self.hostAddress = hostAddress
        self.gateway = gateway
        self.neighbours = NeighbourCache(lifetime: neighbourLifetime)
    }

    /// The gratuitous ARP (IPv6: unsolicited neighbour advertisement) to send on start, so the LAN's
    /// hosts (re)learn the address at this MAC.
    public var announcement: [UInt8] {
        address.isIPv6 ? NeighbourDiscovery.announcement(of: address, mac: mac) : ARPPacket.announcement(of: address, mac: mac)
    }

    /// The Ethernet multicast group the LAN interface must receive for this address (IPv6: its
    /// solicited-node group, where neighbours ask for it), nil for IPv4.
    public var multicastGroup: [UInt8]? {
        address.isIPv6 ? NeighbourDiscovery.multicastMAC(NeighbourDiscovery.solicitedNode(address)) : nil
    }

    /// The ethertypes this presence handles: ARP and IPv4, or IPv6.
    public func handles(etherType: UInt16) -> Bool {
        address.isIPv6 ? etherType == NeighbourDiscovery.etherType : etherType == ARPPacket.etherType || etherType == 0x0800
    }

    /// The neighbour `destination`'s packets go to: itself on the LAN, else the gateway.
    public func nextHop(for destination: IPAddress) -> IPAddress? {
        lan.contains(destination) ? destination : gateway
    }

    /// The MAC the cache holds for `neighbour` (for tests and the log).
    public func neighbour(_ neighbour: IPAddress, now: NIODeadline) -> [UInt8]? { neighbours.lookup(neighbour, now: now) }

    // MARK: - From the LAN

    /// A frame the LAN interface captured (the kernel's filter passed it, but trust nothing).
    public mutating func frameFromLAN(_ frame: ByteBuffer, now: NIODeadline) -> [Action] {
        let base = frame.readerIndex
        guard frame.readableBytes >= 14, let etherType = frame.getInteger(at: base + 12, as: UInt16.self) else {
            counters.framesIgnored &+= 1
            return []
        }
        switch etherType {
        case ARPPacket.etherType where !address.isIPv6:
            return arrivedARP(Array(frame.readableBytesView), now: now)
        case NeighbourDiscovery.etherType where address.isIPv6:
            return arrivedIPv6(frame, now: now)
        case 0x0800 where !address.isIPv6:
            // Unicast to this MAC only: a broadcast or another MAC's frame was not sent to the address.
            guard frame.getBytes(at: base, length: 6) == mac,
                let first = frame.getInteger(at: base + 14, as: UInt8.self), first >> 4 == 4,
                let total = frame.getInteger(at: base + 16, as: UInt16.self), Int(total) >= 20,
                Int(total) <= frame.readableBytes - 14,
                let destination = frame.getBytes(at: base + 30, length: 4), IPAddress(bytes: destination) == address
            else {
                counters.framesIgnored &+= 1
                return []
            }
            // The slice ends at the IP total length: Ethernet pads short frames to 60 bytes.
            counters.framesToRemote &+= 1
            return [.toRemote(frame.getSlice(at: base + 14, length: Int(total))!)]
        default:
            counters.framesIgnored &+= 1
            return []
        }
    }

    private mutating func arrivedIPv6(_ frame: ByteBuffer, now: NIODeadline) -> [Action] {
        let base = frame.readerIndex
        let head = frame.getBytes(at: base, length: min(frame.readableBytes, 55)) ?? []
        if NeighbourDiscovery.isNeighbourDiscovery(head) {
            return arrivedNDP(Array(frame.readableBytesView), now: now)
        }
        guard frame.getBytes(at: base, length: 6) == mac,
            let first = frame.getInteger(at: base + 14, as: UInt8.self), first >> 4 == 6,
            let payload = frame.getInteger(at: base + 18, as: UInt16.self), 54 + Int(payload) <= frame.readableBytes,
            let destination = frame.getBytes(at: base + 38, length: 16), IPAddress(bytes: destination) == address
        else {
            counters.framesIgnored &+= 1
            return []
        }
        counters.framesToRemote &+= 1
        return [.toRemote(frame.getSlice(at: base + 14, length: 40 + Int(payload))!)]
    }

    private mutating func arrivedNDP(_ frame: [UInt8], now: NIODeadline) -> [Action] {
        guard let nd = try? NeighbourDiscovery(frame: frame) else {
            counters.arpIgnored &+= 1
            return []
        }
        switch nd.kind {
        case .solicitation:
            guard let answer = nd.answer(for: address, mac: mac) else {
                counters.arpIgnored &+= 1
                return []
            }
            counters.arpAnswered &+= 1
            var actions: [Action] = [.sendFrame(answer)]
            // As for an ARP request: learn the asker (from its source link-layer option) unless a
            // fresh entry says otherwise.
            if !nd.source.isUnspecified, nd.source != address, let asker = nd.linkLayerAddress {
                let known = neighbours.lookup(nd.source, now: now)
                if known == nil || known == asker {
                    actions += learned(nd.source, at: asker, now: now)
                }
            }
            return actions
        case .advertisement:
            // Only a solicited answer to a question this presence asked: unsolicited ones (forged,
            // or another host's announcement) teach nothing.
            guard nd.flags & NeighbourDiscovery.solicitedFlag != 0, nd.destination == address,
                resolving[nd.target] != nil || refreshed[nd.target] != nil
            else {
                counters.arpIgnored &+= 1
                return []
            }
            return learned(nd.target, at: nd.linkLayerAddress ?? nd.sourceMAC, now: now)
        }
    }

    private mutating func arrivedARP(_ frame: [UInt8], now: NIODeadline) -> [Action] {
        guard let arp = try? ARPPacket(frame: frame), arp.senderIP != address, lan.contains(arp.senderIP),
            arp.senderIP != hostAddress, !arp.senderIP.isUnspecified
        else {
            // Malformed, a conflict (someone else claims the address), or a sender not on the LAN
            // (or a probe from 0.0.0.0: RFC 5227 duplicate address detection, nothing to learn).
            if let arp = try? ARPPacket(frame: frame), arp.operation == .request, arp.targetIP == address,
                arp.senderIP.isUnspecified
            {
                // A host probing for the address must hear that it is taken (RFC 5227 §2.1.1).
                counters.arpAnswered &+= 1
                return [.sendFrame(ARPPacket.announcement(of: address, mac: mac))]
            }
            counters.arpIgnored &+= 1
            return []
        }
        switch arp.operation {
        case .request:
            guard let answer = arp.answer(for: address, mac: mac) else {
                counters.arpIgnored &+= 1
                return []
            }
            counters.arpAnswered &+= 1
            // The asker is about to send to the address; learning it now spares the answer an ARP
            // round (Linux does the same for requests to its own addresses). A request never
            // changes the MAC of a fresh entry, though: that would let any host redirect the
            // address's traffic to another neighbour with one forged request.
            var actions: [Action] = [.sendFrame(answer)]
            let known = neighbours.lookup(arp.senderIP, now: now)
            if known == nil || known == arp.senderMAC {
                actions += learned(arp.senderIP, at: arp.senderMAC, now: now)
            }
            return actions
        case .reply:
            // Only an answer to a question this presence asked (a first request or a confirmation):
            // an unsolicited reply, forged or not, teaches nothing.
            guard arp.targetIP == address, resolving[arp.senderIP] != nil || refreshed[arp.senderIP] != nil else {
                counters.arpIgnored &+= 1
                return []
            }
            return learned(arp.senderIP, at: arp.senderMAC, now: now)
        }
    }

    /// `neighbour` is at `neighbourMAC`: remember it and send what waited for it.
    private mutating func learned(_ neighbour: IPAddress, at neighbourMAC: [UInt8], now: NIODeadline) -> [Action] {
        neighbours.learn(neighbour, at: neighbourMAC, now: now)
        refreshed[neighbour] = nil
        counters.arpLearned &+= 1
        guard let waiting = resolving.removeValue(forKey: neighbour) else { return [] }
        return waiting.packets.map { .sendFrame(ethernet($0, to: neighbourMAC)) }
    }

    // MARK: - To the LAN

    /// A packet from the remote side (the policy passed it: from the address to an allowed prefix).
    public mutating func packetToLAN(_ packet: ByteBuffer, now: NIODeadline) -> [Action] {
        guard let parsed = try? IPPacket(parsing: packet), parsed.version == (address.isIPv6 ? .v6 : .v4) else {
            counters.unreachable &+= 1
            return []
        }
        let destination = parsed.destination
        if address.isIPv6, destination.bytes[0] == 0xff {
            counters.framesSent &+= 1
            return [.sendFrame(ethernet(packet, to: NeighbourDiscovery.multicastMAC(destination)))]
        }
        if destination == lanBroadcast || destination == .v4(0xffff_ffff) {
            counters.framesSent &+= 1
            return [.sendFrame(ethernet(packet, to: ARPPacket.broadcast))]
        }
        guard let hop = nextHop(for: destination) else {
            counters.unreachable &+= 1
            guard let error = unreachable(packet, host: false) else { return [] }
            return [.toRemote(error)]
        }
        if let neighbourMAC = neighbours.lookup(hop, now: now) {
            counters.framesSent &+= 1
            var actions: [Action] = [.sendFrame(ethernet(packet, to: neighbourMAC))]
            // Confirm a neighbour in use before it expires, so traffic never waits for a new ARP round.
            if let age = neighbours.age(of: hop, now: now), age >= .nanoseconds(neighbours.lifetime.nanoseconds * 3 / 4),
                refreshed[hop].map({ now - $0 >= Self.retryInterval }) ?? true
            {
                refreshed[hop] = now
                actions.append(.sendFrame(request(hop, to: neighbourMAC)))
            }
            return actions
        }
        if var waiting = resolving[hop] {
            guard waiting.packets.count < Self.maxQueued else {
                counters.queueFull &+= 1
                return []
            }
            waiting.packets.append(packet)
            resolving[hop] = waiting
            return []
        }
        guard resolving.count < Self.maxResolving else {
            counters.queueFull &+= 1
            return []
        }
        resolving[hop] = Resolution(packets: [packet], attempts: 1, nextTry: now + Self.retryInterval)
        return [.sendFrame(request(hop, to: ARPPacket.broadcast))]
    }

    /// Retries ARP, gives up on silent neighbours, forgets stale entries. Call about every 250 ms.
    public mutating func tick(now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        for (hop, entry) in resolving where entry.nextTry <= now {
            var waiting = entry
            if waiting.attempts >= Self.attempts {
                resolving[hop] = nil
                counters.unreachable &+= UInt64(waiting.packets.count)
                for p in waiting.packets {
                    if let error = unreachable(p, host: true) {
                        actions.append(.toRemote(error))
                    }
                }
            } else {
                waiting.attempts += 1
                waiting.nextTry = now + Self.retryInterval
                resolving[hop] = waiting
                actions.append(.sendFrame(request(hop, to: ARPPacket.broadcast)))
            }
        }
        neighbours.expire(now: now)
        refreshed = refreshed.filter { now - $0.value < neighbours.lifetime }
        return actions
    }

    // MARK: - Frames

    /// The LAN's directed broadcast address (all host bits set).
    private var lanBroadcast: IPAddress? {
        guard case .v4(let network) = lan.address, lan.prefixLength < 31 else { return nil }
        return .v4(network | (UInt32.max >> UInt32(lan.prefixLength)))
    }

    /// ICMP (ICMPv6) host/address or network unreachable about `packet`, from this host's address.
    private func unreachable(_ packet: ByteBuffer, host: Bool) -> ByteBuffer? {
        address.isIPv6
            ? NeighbourDiscovery.unreachable(for: packet, code: host ? 3 : 0, from: hostAddress)
            : ICMPUnreachable.make(for: packet, code: host ? ICMPUnreachable.host : ICMPUnreachable.net, from: hostAddress)
    }

    /// An ARP request (IPv6: neighbour solicitation) for `neighbour` from the address, broadcast
    /// (to the solicited-node group) or (to confirm) unicast.
    private func request(_ neighbour: IPAddress, to destination: [UInt8]) -> [UInt8] {
        if address.isIPv6 {
            return NeighbourDiscovery.solicitation(
                for: neighbour, from: address, mac: mac, unicastMAC: destination == ARPPacket.broadcast ? nil : destination)
        }
        return ARPPacket(operation: .request, senderMAC: mac, senderIP: address, targetMAC: [0, 0, 0, 0, 0, 0], targetIP: neighbour)
            .frame(from: mac, to: destination)
    }

    private func ethernet(_ packet: ByteBuffer, to destination: [UInt8]) -> [UInt8] {
        var frame = destination + mac + (address.isIPv6 ? [0x86, 0xdd] : [0x08, 0x00])
        frame.reserveCapacity(14 + packet.readableBytes)
        frame += packet.readableBytesView
        return frame
    }
}
