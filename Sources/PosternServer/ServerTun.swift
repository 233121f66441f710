import Logging
import NIOCore
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
/// event loop; the netlink requests block it for a few milliseconds once per session.
final class ServerTun {
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

    init(mediator: String, stateDirectory: String, logger: Logger) {
        self.mediator = mediator
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
        do {
            // A session of this mediator that ended without undoing (killed server) left a journal.
            _ = configurator.cleanLeftovers()
            try configurator.recordLink(name: deviceName)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return TunDevice.open(name: deviceName, mtu: mtu, eventLoop: eventLoop)
            .flatMapErrorThrowing { [self] error in
                configurator.undoAll()
                throw error
            }
            .flatMapThrowing { [self] device in
                guard link.isOpen else {
                    device.closeNow()
                    configurator.undoAll()
                    throw ServerTunError("the session ended while TUN mode was starting")
                }
                do {
                    // IPv4 only for now (see MediatorTun): no IPv6 chatter into the tunnel.
                    try configurator.setSysctlIfPresent(NetworkConfigurator.ipv6ConfPath(deviceName, "disable_ipv6"), to: "1")
                    try configurator.setLinkUp(name: deviceName, mtu: mtu)
                    try configurator.setSysctl(NetworkConfigurator.ipv4ConfPath(deviceName, "forwarding"), to: "1")
                    let host = MediatorEnvironment.AddressPrefix(address: answer.address.address, prefixLength: 32)
                    try configurator.addAddress(interface: deviceName, prefix: host)
                    for prefix in answer.prefixes where !prefix.address.isIPv6 {
                        try configurator.addRoute(interface: deviceName, destination: prefix)
                    }
                } catch {
                    device.closeNow()
                    for p in configurator.undoAll() { logger.warning("undoing TUN mode of '\(mediator)': \(p)") }
                    throw error
                }
                let policy = PacketPolicy(remoteAddress: answer.address.address, prefixes: answer.prefixes, mtu: mtu)
                let relay = TunRelay(device: device, policy: policy, side: .server, path: link.datagramPath)
                if let recorder {
                    relay.onPacket = { recorder.write(Array($0.readableBytesView), time: PcapStreamTap.now()) }
                }
                self.relay = relay
                relay.start()
                link.packetReceiver = { [weak relay] in relay?.fromTunnel($0) }
                status = "up"
            }
    }

    func refused(_ why: String) {
        status = "refused: \(why)"
    }

    /// The session ended or the server stops: close the device and undo every change.
    func stop() {
        if let relay {
            self.relay = nil
            relay.stop()
        }
        for p in configurator.undoAll() { logger.warning("undoing TUN mode of '\(mediator)': \(p)") }
        if status == "up" { status = "down" }
    }

    struct ServerTunError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}
