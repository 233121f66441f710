import Logging
import NIOCore
import NIOPosix
import PosternNetlink
import PosternPacket
import PosternPcap
import PosternReplay
import PosternTUN
import PosternTunnel
import PosternWire

/// The mediator's side of TUN mode (docs/protocol.md §10): on the server's TUN request it creates tun
/// device `ptm-NAME`, configures it through netlink (MTU, up, a route to each remote address, a proxy
/// neighbour entry on the LAN interface: ARP for IPv4, NDP for IPv6, forwarding and no proxy delay),
/// answers TUN_READY and relays packets under the policy, reporting its counters in TUN_STATS when
/// the server asked for them. Everything is journaled and undone when the session ends or the
/// mediator stops; a restart undoes what a crashed run left. Lives on the event loop; the netlink
/// requests of the start run on the thread pool (undoing stays on the loop: it must be done before
/// a stopping mediator exits). `@unchecked Sendable` for those pool steps: they use only the
/// configurator and the settings, while `starting` keeps the event loop away from the configurator.
final class MediatorTun: @unchecked Sendable {
    /// `--pcap`: the device's packets are recorded here too (set by `MediatorService`).
    var recorder: PcapRecorder?
    let settings: MediatorTunSettings
    let deviceName: String
    private let configurator: NetworkConfigurator
    private var logger: Logger
    private(set) var relay: TunRelay?
    private var starting = false
    /// Completes once the start under way has finished, and undone its changes if `stop` came meanwhile.
    private var startFinished: EventLoopFuture<Void>?
    /// `stop` came while the start was under way: the start undoes what it made instead of relaying.
    private var stopRequested = false
    /// The TUN request whose mode is up (or starting): a TUN_CLOSE must name it.
    private var requestID: UInt32?
    /// TUN_STATS every `statsInterval` while the counters change (the server's TUN asked for them).
    private var statsTask: RepeatedTask?
    private var lastStats: PacketCounters?
    static let statsInterval = TimeAmount.seconds(2)

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

    /// TUN requests the server made since this process started (`MediatorService` checks that one
    /// came after its offer).
    private(set) var requests = 0

    /// The server asks for TUN mode.
    func start(_ request: Frame.Tun, session: TunnelSession, path: UDPChannelDatagramPath) {
        requests += 1
        guard relay == nil, !starting else {
            return fail(session, request.requestID, .invalidState, "TUN mode is already up in this session")
        }
        let mtu = min(Int(request.mtu), settings.maxMTU)
        guard mtu >= 576 else {
            return fail(session, request.requestID, .notSupported, "an MTU of \(request.mtu) is below IPv4's 576")
        }
        let flags = request.flags ?? []
        // An older server takes only the IPv4 address in TUN_READY (docs/protocol.md §10.1).
        let addresses = settings.addresses.filter { !$0.address.isIPv6 || flags.contains(.ipv6) }
        guard !addresses.isEmpty else {
            return fail(
                session, request.requestID, .notSupported,
                "the server does not take IPv6 in TUN mode, and --tun gives no IPv4 address")
        }
        if addresses.count < settings.addresses.count {
            logger.warning("the server does not take IPv6 in TUN mode: the remote side gets \(addresses[0]) only")
        }
        let hasIPv6 = addresses.contains { $0.address.isIPv6 }
        if settings.lanPresence == .raw {
            // ARP for the IPv4 address, NDP for the IPv6 one; both must be on the same LAN interface
            // (one packet socket speaks for both).
            var links: [(link: LANLink, address: MediatorEnvironment.AddressPrefix)] = []
            do {
                for address in addresses { links.append((try self.lanLink(for: address), address)) }
            } catch {
                return fail(session, request.requestID, .addressNotAvailable, "\(error)")
            }
            guard Set(links.map(\.link.index)).count == 1 else {
                return fail(
                    session, request.requestID, .notSupported,
                    "the raw LAN presence needs the IPv4 and IPv6 --tun addresses on the same LAN interface (they are on \(links.map(\.link.name).joined(separator: " and ")))"
                )
            }
            return startRaw(request, session: session, path: path, links: links, mtu: mtu)
        }
        starting = true
        requestID = request.requestID
        let eventLoop = session.eventLoop
        let finished = eventLoop.makePromise(of: Void.self)
        startFinished = finished.futureResult
        // Netlink requests and the state file block for milliseconds: off the event loop, on the
        // thread pool, one step at a time (`starting` keeps a second start out meanwhile).
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { [self] () throws -> [LAN] in
            var lans: [LAN] = []
            do {
                for address in addresses { lans.append(LAN(address: address, interface: try lanInterface(for: address))) }
            } catch {
                throw StartFailure(code: .addressNotAvailable, message: "\(error)")
            }
            cleanLeftovers()
            // Before claiming an address, ask the LAN whether a host already has it (after the
            // leftovers are gone, so a crashed run's proxy entry does not answer for it).
            for lan in lans {
                if let mac = try? configurator.neighbourAnswering(interface: lan.interface, address: lan.address.address) {
                    throw StartFailure(
                        code: .addressInUse,
                        message:
                            "\(lan.address.address) is in use on \(lan.interface): \(mac.map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined(separator: ":")) answered for it"
                    )
                }
            }
            do {
                try configurator.recordLink(name: deviceName)
            } catch {
                throw StartFailure(code: .internalError, message: "cannot record TUN mode changes: \(error)")
            }
            return lans
        }.flatMap { [self] (lans: [LAN]) -> EventLoopFuture<(TunDevice, [LAN])> in
            TunDevice.open(name: deviceName, mtu: mtu, eventLoop: eventLoop, offload: settings.offload)
                .flatMapErrorThrowing { error -> TunDevice in
                    throw StartFailure(code: .permissionDenied, message: "\(error)", undo: true)
                }
                .flatMap { (device: TunDevice) -> EventLoopFuture<(TunDevice, [LAN])> in
                    guard session.isOpen, !self.stopRequested else {
                        device.closeNow()
                        return eventLoop.makeFailedFuture(StartFailure(code: .shuttingDown, message: "", undo: true, quiet: true))
                    }
                    return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { [self] () throws -> Void in
                        do {
                            try configure(lans: lans, mtu: mtu)
                        } catch {
                            device.closeNow()
                            throw StartFailure(code: .addressInUse, message: "\(error)", undo: true)
                        }
                    }.map { () -> (TunDevice, [LAN]) in (device, lans) }
                }
        }.whenComplete { [self] result in
            starting = false
            // Last, after any undo below: a stopping mediator exits only once this has run.
            defer {
                startFinished = nil
                stopRequested = false
                finished.succeed(())
            }
            switch result {
            case .failure(let error):
                let failure = error as? StartFailure ?? StartFailure(code: .internalError, message: "\(error)", undo: true)
                requestID = nil
                if failure.undo {
                    for p in configurator.undoAll() { logger.warning("undoing TUN mode: \(p)") }
                }
                if !failure.quiet { fail(session, request.requestID, failure.code, failure.message) }
            case .success(let (device, lans)):
                guard session.isOpen, !stopRequested else {
                    device.closeNow()
                    requestID = nil
                    configurator.undoAll()
                    return
                }
                let prefixes = settings.prefixes(ipv6: hasIPv6)
                let policy = PacketPolicy(remoteAddresses: addresses.map(\.address), prefixes: prefixes, mtu: mtu)
                startRelay(device: device, policy: policy, path: path)
                logger.info(
                    "TUN mode up: \(deviceName) MTU \(mtu), remote side \(lans.map { "\($0.address.address) on \($0.interface)" }.joined(separator: ", ")), LAN prefixes \(prefixes.map(\.description).joined(separator: ", ")), offloads \(device.offloads)"
                )
                session.send(
                    .tunReady(
                        .init(
                            requestID: request.requestID, mtu: UInt16(mtu), address: addresses[0], prefixes: prefixes,
                            secondAddress: addresses.count > 1 ? addresses[1] : nil)))
                if flags.contains(.stats) { startStats(session, withDevice: flags.contains(.deviceStats)) }
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
        _ request: Frame.Tun, session: TunnelSession, path: UDPChannelDatagramPath,
        links: [(link: LANLink, address: MediatorEnvironment.AddressPrefix)], mtu: Int
    ) {
        let lan = links[0].link
        let presences = links.map {
            LANPresence(
                address: $0.address.address, mac: $0.link.mac, lan: $0.address, hostAddress: $0.link.hostAddress,
                gateway: $0.link.gateway)
        }
        let device: LANPresenceDevice
        do {
            device = try LANPresenceDevice.open(
                interface: lan.name, ifindex: lan.index, presences: presences, mtu: mtu, eventLoop: session.eventLoop)
        } catch {
            return fail(session, request.requestID, .permissionDenied, "\(error)")
        }
        let addresses = links.map(\.address)
        let hasIPv6 = addresses.contains { $0.address.isIPv6 }
        let prefixes = settings.prefixes(ipv6: hasIPv6)
        requestID = request.requestID
        startRelay(
            device: device, policy: PacketPolicy(remoteAddresses: addresses.map(\.address), prefixes: prefixes, mtu: mtu), path: path)
        let gateways = links.compactMap(\.link.gateway).map(\.description)
        let gateway = gateways.isEmpty ? ", no gateway" : ", gateway \(gateways.joined(separator: " and "))"
        logger.info(
            "TUN mode up (raw LAN presence): remote side \(addresses.map(\.address.description).joined(separator: " and ")) at \(MediatorTun.macText(lan.mac)) on \(lan.name)\(gateway), MTU \(mtu), LAN prefixes \(prefixes.map(\.description).joined(separator: ", "))"
        )
        session.send(
            .tunReady(
                .init(
                    requestID: request.requestID, mtu: UInt16(mtu), address: addresses[0], prefixes: prefixes,
                    secondAddress: addresses.count > 1 ? addresses[1] : nil)))
        if (request.flags ?? []).contains(.stats) { startStats(session, withDevice: false) }
    }

    static func macText(_ mac: [UInt8]) -> String {
        mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }

    /// TUN_STATS (docs/protocol.md §10.5): the totals, whenever they changed, every `statsInterval`;
    /// `withDevice`: with the tun device's offload counters (the server's TUN had the `deviceStats` flag).
    private func startStats(_ session: TunnelSession, withDevice: Bool) {
        lastStats = nil
        statsTask = session.eventLoop.scheduleRepeatedTask(initialDelay: Self.statsInterval, delay: Self.statsInterval) {
            [weak self, weak session] task in
            guard let self, let session, session.isOpen, let relay = self.relay else {
                task.cancel()
                return
            }
            let c = relay.counters
            guard c != self.lastStats else { return }
            self.lastStats = c
            let device = withDevice ? (relay.device as? TunDevice).map { Self.deviceStats($0.offloadCounters, offloads: $0.offloads) } : nil
            session.send(.tunStats(Self.stats(c, device: device)))
        }
    }

    /// The frame of `counters`: reasons sorted by name, at most the frame's limit.
    static func stats(_ c: PacketCounters, device: Frame.TunStats.Device? = nil) -> Frame.TunStats {
        Frame.TunStats(
            toLAN: c.toLAN, fromLAN: c.fromLAN, errorsSent: c.fragmentationNeeded,
            dropped: c.dropped.sorted { $0.key < $1.key }.prefix(Frame.TunStats.maxReasons).map { (reason: $0.key, count: $0.value) },
            device: device)
    }

    /// The device part of TUN_STATS (docs/protocol.md §10.5): the granted offloads as their bits.
    static func deviceStats(_ c: DeviceOffloadCounters, offloads: TunDevice.Offloads) -> Frame.TunStats.Device {
        Frame.TunStats.Device(
            asked: c.asked, offloads: offloads.rawValue, superPacketsRead: c.superPacketsRead, coalescedWrites: c.coalescedWrites,
            offloadRefused: c.offloadRefused)
    }

    /// What the kernel needs so LAN hosts reach the remote addresses through this host.
    private func configure(lans: [LAN], mtu: Int) throws {
        let v4 = lans.first { !$0.address.address.isIPv6 }
        let v6 = lans.first { $0.address.address.isIPv6 }
        if v6 == nil {
            // No IPv6 on the device, so the kernel sends no router solicitations or MLD reports into
            // a tunnel that would drop them.
            try configurator.setSysctlIfPresent(NetworkConfigurator.ipv6ConfPath(deviceName, "disable_ipv6"), to: "1")
        } else {
            // IPv6 on, but no link-local address (addr_gen_mode 1: none) and no autoconfiguration:
            // the device only carries the routed remote address, and sends nothing of its own.
            try configurator.setSysctl(NetworkConfigurator.ipv6ConfPath(deviceName, "addr_gen_mode"), to: "1")
            try configurator.setSysctl(NetworkConfigurator.ipv6ConfPath(deviceName, "accept_ra"), to: "0")
            try configurator.setSysctl(NetworkConfigurator.ipv6ConfPath(deviceName, "disable_ipv6"), to: "0")
        }
        try configurator.setLinkUp(name: deviceName, mtu: mtu)
        if let v4 {
            // Forwarding is decided by the interface a packet arrives on: the tun (remote to LAN) and
            // the LAN interface (LAN to remote). Set per interface, not host-wide.
            try configurator.setSysctl(NetworkConfigurator.ipv4ConfPath(deviceName, "forwarding"), to: "1")
            try configurator.setSysctl(NetworkConfigurator.ipv4ConfPath(v4.interface, "forwarding"), to: "1")
            // Answer ARP for the remote address at once instead of after a random delay of up to 0.8 s.
            try configurator.setSysctl(NetworkConfigurator.ipv4NeighPath(v4.interface, "proxy_delay"), to: "0")
            let host = MediatorEnvironment.AddressPrefix(address: v4.address.address, prefixLength: 32)
            try configurator.addRoute(interface: deviceName, destination: host)
            try configurator.addProxyNeighbour(interface: v4.interface, address: v4.address.address)
        }
        if let v6 {
            try configurator.enableIPv6Forwarding(except: deviceName)
            // Answer neighbour solicitations for the proxied address on the LAN, at once.
            try configurator.setSysctl(NetworkConfigurator.ipv6ConfPath(v6.interface, "proxy_ndp"), to: "1")
            try configurator.setSysctlIfPresent(NetworkConfigurator.ipv6NeighPath(v6.interface, "proxy_delay"), to: "0")
            let host = MediatorEnvironment.AddressPrefix(address: v6.address.address, prefixLength: 128)
            try configurator.addRoute(interface: deviceName, destination: host)
            try configurator.addProxyNeighbour(interface: v6.interface, address: v6.address.address)
        }
    }

    /// The interface with an address of `remote`'s family in its prefix: the LAN.
    private func lanInterface(for remote: MediatorEnvironment.AddressPrefix) throws -> String {
        let environment = try NetlinkEnvironment.read(softwareVersion: "")
        let lan = remote.network
        for interface in environment.interfaces where interface.name != deviceName {
            for a in interface.addresses where a.address.isIPv6 == remote.address.isIPv6 && lan.contains(a.address) {
                guard a.address != remote.address else {
                    throw TunError("\(remote.address) is already an address of \(interface.name) on this host")
                }
                return interface.name
            }
        }
        throw TunError("no interface of this host has an address in \(lan) (--tun \(remote))")
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

    /// The Ethernet interface with an address of `remote`'s family in its prefix, for the raw LAN
    /// presence, and that family's default gateway on it (IPv6: the router's link-local address).
    private func lanLink(for remote: MediatorEnvironment.AddressPrefix) throws -> LANLink {
        let environment = try NetlinkEnvironment.read(softwareVersion: "")
        let lan = remote.network
        for interface in environment.interfaces where interface.name != deviceName {
            for a in interface.addresses where a.address.isIPv6 == remote.address.isIPv6 && lan.contains(a.address) {
                guard a.address != remote.address else {
                    throw TunError("\(remote.address) is already an address of \(interface.name) on this host")
                }
                guard ARPPacket.isUnicast(interface.mac) else {
                    throw TunError("\(interface.name) has no Ethernet address: the raw LAN presence needs an Ethernet LAN")
                }
                let gateway = environment.routes.first {
                    $0.interfaceIndex == interface.index && $0.gateway.map { $0.isIPv6 == remote.address.isIPv6 } == true
                }?.gateway
                return LANLink(
                    name: interface.name, index: interface.index, mac: interface.mac, hostAddress: a.address, gateway: gateway)
            }
        }
        throw TunError("no interface of this host has an address in \(lan) (--tun \(remote))")
    }

    /// The server ends TUN mode (docs/protocol.md §10.7): undo it now, the session goes on.
    func close(_ request: Frame.TunClose) {
        guard request.requestID == requestID, relay != nil else {
            logger.debug("ignored a TUN_CLOSE for request \(request.requestID): not the TUN mode that is up")
            return
        }
        logger.warning("the server ended TUN mode: \(PeerText.sanitized(request.message))")
        stop()
    }

    /// A PACKET frame from the TCP channel.
    func packetFrame(_ packet: ByteBuffer) {
        relay?.fromTunnel(packet)
    }

    /// The session ended or the mediator stops: close the device, undo every change. A start under way
    /// is left to finish (its netlink steps run on the thread pool, and undoing meanwhile would race
    /// them); it then undoes everything itself, and the future returned completes after that: a
    /// stopping mediator waits for it, or a SIGTERM during the start would exit with changes made.
    @discardableResult
    func stop() -> EventLoopFuture<Void>? {
        if starting, let startFinished {
            stopRequested = true
            return startFinished
        }
        statsTask?.cancel()
        statsTask = nil
        guard let relay else { return nil }
        requestID = nil
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
        return nil
    }

    /// Why packets were dropped, in words, by `PacketPolicy.Drop` raw value or relay reason.
    static func dropText(_ reason: String) -> String {
        switch reason {
        case "source": return "a source outside the allowed prefixes, or a server packet not from the remote address"
        case "destination": return "a destination outside the allowed prefixes, or a LAN packet not to the remote address"
        case "malformed": return "not a valid IPv4 or IPv6 packet"
        case "unsupported": return "an IP version the remote side has no address of (IPv6 without an IPv6 --tun)"
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

    /// The LAN interface that holds a remote address's prefix.
    struct LAN: Sendable {
        var address: MediatorEnvironment.AddressPrefix
        var interface: String
    }

    /// Why a start failed: the FAILED code and message, and whether changes may have been made.
    struct StartFailure: Error {
        var code: ErrorCode
        var message: String
        var undo = false
        var quiet = false
    }

    struct TunError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}
