import Logging
import NIOCore
import PosternNetlink
import PosternPacket
import PosternPcap
import PosternReplay
import PosternTUN
import PosternTunnel
import PosternWire

/// The mediator's side of TUN mode (docs/protocol.md §10): on the server's TUN request it creates tun
/// device `ptm-NAME`, configures it through netlink (MTU, up, a route to the remote address, a proxy
/// neighbour entry on the LAN interface, forwarding on both interfaces and no proxy delay), answers
/// TUN_READY and relays packets under the policy. Everything is journaled and undone when the session
/// ends or the mediator stops; a restart undoes what a crashed run left. Lives on the event loop; the
/// netlink requests block it for a few milliseconds once per session.
final class MediatorTun {
    /// `--pcap`: the device's packets are recorded here too (set by `MediatorService`).
    var recorder: PcapRecorder?
    let settings: MediatorTunSettings
    let deviceName: String
    private let configurator: NetworkConfigurator
    private var logger: Logger
    private(set) var relay: TunRelay?
    private var starting = false

    init(settings: MediatorTunSettings, mediatorName: String, logger: Logger) {
        self.settings = settings
        self.deviceName = TunDeviceName.make(prefix: TunDeviceName.mediatorPrefix, mediator: mediatorName)
        self.configurator = NetworkConfigurator(stateFile: settings.stateDirectory + "/tun-\(deviceName).journal")
        self.logger = logger
    }

    /// Undoes what a run that did not stop cleanly left behind (its state file).
    func cleanLeftovers() {
        let (found, problems) = configurator.cleanLeftovers()
        if !found.isEmpty {
            logger.notice("undid \(found.count) TUN mode changes a previous run left: \(found.map(\.line).joined(separator: "; "))")
        }
        for p in problems { logger.warning("cleaning up after a previous run: \(p)") }
    }

    /// The server asks for TUN mode.
    func start(_ request: Frame.Tun, session: TunnelSession, path: UDPChannelDatagramPath) {
        guard relay == nil, !starting else {
            return fail(session, request.requestID, .invalidState, "TUN mode is already up in this session")
        }
        let mtu = min(Int(request.mtu), settings.maxMTU)
        guard mtu >= 576 else {
            return fail(session, request.requestID, .notSupported, "an MTU of \(request.mtu) is below IPv4's 576")
        }
        let lanLink: LANLink
        do {
            lanLink = try lanInterface()
        } catch {
            return fail(session, request.requestID, .addressNotAvailable, "\(error)")
        }
        if settings.lanPresence == .raw {
            return startRaw(request, session: session, path: path, lan: lanLink, mtu: mtu)
        }
        let lan = lanLink.name
        cleanLeftovers()
        starting = true
        do {
            try configurator.recordLink(name: deviceName)
        } catch {
            starting = false
            return fail(session, request.requestID, .internalError, "cannot record TUN mode changes: \(error)")
        }
        TunDevice.open(name: deviceName, mtu: mtu, eventLoop: session.eventLoop).whenComplete { [self] result in
            starting = false
            switch result {
            case .failure(let error):
                configurator.undoAll()
                fail(session, request.requestID, .permissionDenied, "\(error)")
            case .success(let device):
                guard session.isOpen else {
                    device.closeNow()
                    configurator.undoAll()
                    return
                }
                do {
                    try configure(lan: lan, mtu: mtu)
                } catch {
                    device.closeNow()
                    for p in configurator.undoAll() { logger.warning("undoing TUN mode: \(p)") }
                    return fail(session, request.requestID, .addressInUse, "\(error)")
                }
                let policy = PacketPolicy(remoteAddress: settings.address.address, prefixes: settings.prefixes, mtu: mtu)
                startRelay(device: device, policy: policy, path: path)
                logger.info(
                    "TUN mode up: \(deviceName) MTU \(mtu), remote side \(settings.address.address) on \(lan), LAN prefixes \(settings.prefixes.map(\.description).joined(separator: ", ")), offloads \(device.offloads)"
                )
                session.send(
                    .tunReady(
                        .init(requestID: request.requestID, mtu: UInt16(mtu), address: settings.address, prefixes: settings.prefixes)))
            }
        }
    }

    private func startRelay(device: any RelayedPacketDevice, policy: PacketPolicy, path: UDPChannelDatagramPath) {
        let relay = TunRelay(device: device, policy: policy, side: .mediator, path: path)
        if let recorder {
            relay.onPacket = { recorder.write(Array($0.readableBytesView), time: PcapStreamTap.now()) }
        }
        relay.onDrops = { [logger] reason, count in
            logger.warning("TUN mode dropped \(count) packet\(count == 1 ? "" : "s") so far: \(MediatorTun.dropText(reason))")
        }
        self.relay = relay
        relay.start()
    }

    /// `--lan-presence raw`: no tun device, no route, no proxy entry, no sysctl: a packet socket on
    /// the LAN interface speaks for the remote address (LANPresenceDevice). Nothing to journal.
    private func startRaw(
        _ request: Frame.Tun, session: TunnelSession, path: UDPChannelDatagramPath, lan: LANLink, mtu: Int
    ) {
        let presence = LANPresence(
            address: settings.address.address, mac: lan.mac, lan: settings.address, hostAddress: lan.hostAddress,
            gateway: lan.gateway)
        let device: LANPresenceDevice
        do {
            device = try LANPresenceDevice.open(
                interface: lan.name, ifindex: lan.index, presence: presence, mtu: mtu,
                eventLoop: session.eventLoop)
        } catch {
            return fail(session, request.requestID, .permissionDenied, "\(error)")
        }
        let policy = PacketPolicy(remoteAddress: settings.address.address, prefixes: settings.prefixes, mtu: mtu)
        startRelay(device: device, policy: policy, path: path)
        let gateway = lan.gateway.map { ", gateway \($0)" } ?? ", no gateway"
        logger.info(
            "TUN mode up (raw LAN presence): remote side \(settings.address.address) at \(MediatorTun.macText(lan.mac)) on \(lan.name)\(gateway), MTU \(mtu), LAN prefixes \(settings.prefixes.map(\.description).joined(separator: ", "))"
        )
        session.send(
            .tunReady(.init(requestID: request.requestID, mtu: UInt16(mtu), address: settings.address, prefixes: settings.prefixes)))
    }

    static func macText(_ mac: [UInt8]) -> String {
        mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }

    /// What the kernel needs so LAN hosts reach the remote address through this host.
    private func configure(lan: String, mtu: Int) throws {
        // IPv4 only for now: no IPv6 on the device, so the kernel sends no router solicitations or
        // MLD reports into a tunnel that would drop them.
        try configurator.setSysctlIfPresent(NetworkConfigurator.ipv6ConfPath(deviceName, "disable_ipv6"), to: "1")
        try configurator.setLinkUp(name: deviceName, mtu: mtu)
        // Forwarding is decided by the interface a packet arrives on: the tun (remote to LAN) and the
        // LAN interface (LAN to remote). Set per interface, not host-wide.
        try configurator.setSysctl(NetworkConfigurator.ipv4ConfPath(deviceName, "forwarding"), to: "1")
        try configurator.setSysctl(NetworkConfigurator.ipv4ConfPath(lan, "forwarding"), to: "1")
        // Answer ARP for the remote address at once instead of after a random delay of up to 0.8 s.
        try configurator.setSysctl(NetworkConfigurator.ipv4NeighPath(lan, "proxy_delay"), to: "0")
        let host = MediatorEnvironment.AddressPrefix(address: settings.address.address, prefixLength: 32)
        try configurator.addRoute(interface: deviceName, destination: host)
        try configurator.addProxyNeighbour(interface: lan, address: settings.address.address)
    }

    /// The LAN interface as the raw LAN presence needs it.
    struct LANLink {
        var name: String
        var index: UInt32
        var mac: [UInt8]
        /// This host's address on it.
        var hostAddress: IPAddress
        /// Its default route's gateway, if it has one.
        var gateway: IPAddress?
    }

    /// The interface with an IPv4 address in the remote address's prefix: the LAN.
    private func lanInterface() throws -> LANLink {
        let environment = try NetlinkEnvironment.read(softwareVersion: "")
        let lan = settings.address.network
        for interface in environment.interfaces where interface.name != deviceName {
            for a in interface.addresses where !a.address.isIPv6 && lan.contains(a.address) {
                guard a.address != settings.address.address else {
                    throw TunError("\(settings.address.address) is already an address of \(interface.name) on this host")
                }
                if settings.lanPresence == .raw && !ARPPacket.isUnicast(interface.mac) {
                    throw TunError("\(interface.name) has no Ethernet address: the raw LAN presence needs an Ethernet LAN")
                }
                let gateway = environment.routes.first {
                    $0.interfaceIndex == interface.index && $0.gateway.map { !$0.isIPv6 } == true
                }?.gateway
                return LANLink(
                    name: interface.name, index: interface.index, mac: interface.mac, hostAddress: a.address,
                    gateway: gateway)
            }
        }
        throw TunError("no interface of this host has an address in \(lan) (--tun \(settings.address))")
    }

    /// A PACKET frame from the TCP channel.
    func packetFrame(_ packet: ByteBuffer) {
        relay?.fromTunnel(packet)
    }

    /// The session ended or the mediator stops: close the device, undo every change.
    func stop() {
        guard let relay else { return }
        self.relay = nil
        relay.stop()
        let c = relay.counters
        for p in configurator.undoAll() { logger.warning("undoing TUN mode: \(p)") }
        if let raw = relay.device as? LANPresenceDevice {
            let l = raw.counters
            let perRead = raw.reads == 0 ? 0 : Double(raw.framesRead) / Double(raw.reads)
            logger.info(
                "raw LAN presence: ARP answered \(l.arpAnswered), learned \(l.arpLearned), ignored \(l.arpIgnored); frames ignored \(l.framesIgnored), \(raw.offloadFailures) dropped for offload headers that did not add up; frames sent \(l.framesSent) (\(raw.sendFailures) refused); unreachable \(l.unreachable), queue full \(l.queueFull); \(raw.framesRead) frames in \(raw.reads) reads (\((perRead * 10).rounded() / 10) a read)"
            )
        }
        logger.info(
            "TUN mode down: \(c.toLAN) packets to the LAN, \(c.fromLAN) from it, dropped \(c.totalDropped) \(c.dropped.sorted { $0.key < $1.key })"
        )
    }

    /// Why packets were dropped, in words, by `PacketPolicy.Drop` raw value or relay reason.
    static func dropText(_ reason: String) -> String {
        switch reason {
        case "source": return "a source outside the allowed prefixes, or a server packet not from the remote address"
        case "destination": return "a destination outside the allowed prefixes, or a LAN packet not to the remote address"
        case "malformed": return "not a valid IPv4 packet"
        case "unsupported": return "IPv6 (not carried yet)"
        case "tooLarge": return "larger than the MTU"
        case "path": return "the tunnel could not take it"
        case "device": return "the tun device (or the raw LAN presence's socket) refused it"
        default: return reason
        }
    }

    private func fail(_ session: TunnelSession, _ requestID: UInt32, _ code: ErrorCode, _ message: String) {
        logger.warning("TUN mode refused: \(message)")
        session.send(.failed(.init(requestID: requestID, code: code, errno: 0, message: message)))
    }

    struct TunError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}
