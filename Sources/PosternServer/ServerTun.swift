import Logging
import NIOCore
import NIOPosix
import PosternNetlink
import PosternPacket
import PosternPcap
import PosternReplay
import PosternTUN
import PosternWire

/// The server's side of TUN mode for one mediator (docs/protocol.md §10): tun device `pts-NAME`
/// holding the remote side's LAN address (/32), routes to the mediator's LAN prefixes through it, and
/// forwarding on it; packets relayed under the same policy the mediator applies. Forwarded traffic of
/// other hosts must leave through the device with that address as its source (the README's nftables
/// masquerade rule), since the mediator forwards only packets from the remote address. Lives on the
/// event loop; the netlink requests of the start run on the thread pool. `@unchecked Sendable` for
/// those pool steps: they use only the configurator, while `starting` keeps `stop` away from it.
final class ServerTun: @unchecked Sendable {
    /// `--pcap`: the device's packets are recorded here too (set by `ServerTunMode`).
    var recorder: PcapRecorder?
    let mediator: String
    let deviceName: String
    private let configurator: NetworkConfigurator
    private var logger: Logger
    private(set) var relay: TunRelay?
    /// The offloads the kernel granted the device, for the start-up line.
    var offloads: String { (relay?.device as? TunDevice).map { "\($0.offloads)" } ?? "none" }
    private(set) var ready: Frame.TunReady?
    /// "requested", "up", or why it is not.
    private(set) var status = "requested"
    /// The start's netlink work is under way on the thread pool: the configurator is busy there.
    private var starting = false
    /// Completes once the start under way has finished, and undone its changes if `stop` came meanwhile.
    private var startFinished: EventLoopFuture<Void>?
    /// `stop` came while the start was under way: the start undoes what it made instead of relaying.
    private var stopRequested = false

    /// Whether the device asks the kernel for offloads (`--tun-offload`).
    let offload: Bool

    init(mediator: String, stateDirectory: String, offload: Bool = true, logger: Logger) {
        self.mediator = mediator
        self.offload = offload
        self.deviceName = TunDeviceName.make(prefix: TunDeviceName.serverPrefix, mediator: mediator)
        self.configurator = NetworkConfigurator(stateFile: Self.stateFile(stateDirectory, deviceName))
        self.logger = logger
    }

    static func stateFile(_ directory: String, _ device: String) -> String { directory + "/tun-\(device).journal" }

    /// The mediator answered TUN: create and configure the device, then relay.
    func start(_ answer: Frame.TunReady, link: MediatorLink) -> EventLoopFuture<Void> {
        let eventLoop = link.session.eventLoop
        ready = answer
        let mtu = Int(answer.mtu)
        starting = true
        // Netlink requests and the state file block for milliseconds: off the event loop, on the
        // thread pool, one step at a time; `stop` waits for the start to finish (`starting`).
        let result = NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { [self] in
            // A session of this mediator that ended without undoing (killed server) left a journal.
            _ = configurator.cleanLeftovers()
            try configurator.recordLink(name: deviceName)
        }
        .flatMap { [self] in
            TunDevice.open(name: deviceName, mtu: mtu, eventLoop: eventLoop, offload: offload)
                .flatMapError { [self] error in
                    NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { [self] in
                        configurator.undoAll()
                        throw error
                    }
                }
        }
        .flatMap { [self] device in
            guard link.isOpen, !stopRequested else { return eventLoop.makeSucceededFuture(device) }
            return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { [self] in
                do {
                    try configureDevice(answer, mtu: mtu)
                } catch {
                    device.closeNow()
                    for p in configurator.undoAll() { logger.warning("undoing TUN mode of '\(mediator)': \(p)") }
                    throw error
                }
                return device
            }
        }
        .always { [self] _ in starting = false }
        .flatMapThrowing { [self] device in
            guard link.isOpen, !stopRequested else {
                device.closeNow()
                configurator.undoAll()
                throw ServerTunError("the session ended while TUN mode was starting")
            }
            let policy = PacketPolicy(remoteAddresses: answer.addresses.map(\.address), prefixes: answer.prefixes, mtu: mtu)
            let relay = TunRelay(device: device, policy: policy, side: .server, path: link.datagramPath)
            if let recorder {
                relay.onPacket = { recorder.write(Array($0.readableBytesView), time: PcapStreamTap.now()) }
            }
            self.relay = relay
            relay.start()
            link.packetReceiver = { [weak relay] in relay?.fromTunnel($0) }
            status = "up"
        }
        let finished = eventLoop.makePromise(of: Void.self)
        startFinished = finished.futureResult
        // After every step above, undo included: a stopping server, or the next session of this
        // mediator (same device name, same journal), waits for this.
        result.whenComplete { [self] _ in
            startFinished = nil
            stopRequested = false
            finished.succeed(())
        }
        return result
    }

    /// The device holds each remote address as a host address (/32, /128) and routes the prefixes of
    /// those families.
    private func configureDevice(_ answer: Frame.TunReady, mtu: Int) throws {
        let hasIPv6 = answer.addresses.contains { $0.address.isIPv6 }
        if hasIPv6 {
            // IPv6 on for the remote address only: no link-local address, no autoconfiguration, so
            // the device sends nothing of its own into the tunnel (MediatorTun does the same).
            try configurator.setSysctl(NetworkConfigurator.ipv6ConfPath(deviceName, "addr_gen_mode"), to: "1")
            try configurator.setSysctl(NetworkConfigurator.ipv6ConfPath(deviceName, "accept_ra"), to: "0")
            try configurator.setSysctl(NetworkConfigurator.ipv6ConfPath(deviceName, "disable_ipv6"), to: "0")
        } else {
            // IPv4 only (see MediatorTun): no IPv6 chatter into the tunnel.
            try configurator.setSysctlIfPresent(NetworkConfigurator.ipv6ConfPath(deviceName, "disable_ipv6"), to: "1")
        }
        try configurator.setLinkUp(name: deviceName, mtu: mtu)
        try configurator.setSysctl(NetworkConfigurator.ipv4ConfPath(deviceName, "forwarding"), to: "1")
        for address in answer.addresses {
            let host = MediatorEnvironment.AddressPrefix(address: address.address, prefixLength: address.address.isIPv6 ? 128 : 32)
            try configurator.addAddress(interface: deviceName, prefix: host)
        }
        for prefix in answer.prefixes where !prefix.address.isIPv6 || hasIPv6 {
            try configurator.addRoute(interface: deviceName, destination: prefix)
        }
    }

    func refused(_ why: String) {
        status = "refused: \(why)"
    }

    /// The session ended or the server stops: close the device and undo every change. A start under
    /// way is told to undo its changes itself when it is done (its netlink steps run on the thread
    /// pool); the future returned completes after that, nil when all is undone already.
    @discardableResult
    func stop() -> EventLoopFuture<Void>? {
        if let startFinished {
            stopRequested = true
            return startFinished
        }
        if let relay {
            self.relay = nil
            relay.stop()
        }
        for p in configurator.undoAll() { logger.warning("undoing TUN mode of '\(mediator)': \(p)") }
        if status == "up" { status = "down" }
        return nil
    }

    struct ServerTunError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}

extension PacketCounters {
    /// The mediator's counters as its TUN_STATS carried them.
    init(_ stats: Frame.TunStats) {
        self.init()
        toLAN = stats.toLAN
        fromLAN = stats.fromLAN
        fragmentationNeeded = stats.errorsSent
        for d in stats.dropped { dropped[d.reason, default: 0] &+= d.count }
        offload = stats.device.map {
            DeviceOffloadCounters(
                asked: $0.asked, offloads: "\(TunDevice.Offloads(rawValue: $0.offloads))", superPacketsRead: $0.superPacketsRead,
                coalescedWrites: $0.coalescedWrites, offloadRefused: $0.offloadRefused)
        }
    }
}
