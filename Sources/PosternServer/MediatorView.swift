import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PosternCore
import PosternPacket
import PosternTunnel
import PosternWire

/// A mediator as the admin API shows it.
struct MediatorView: Encodable {
    struct InterfaceView: Encodable {
        var name: String
        var index: UInt32
        var mac: String
        var mtu: UInt32
        var up: Bool
        var addresses: [String]
    }
    struct RouteView: Encodable {
        var destination: String
        var gateway: String?
        var interface: String
    }
    /// A session's UDP channels (docs/protocol.md §9): which path its datagrams take now and what the
    /// channels counted. Drops are by reason; `unrouted` is server-wide (datagrams naming no session).
    struct DatagramPathView: Encodable {
        var path: String
        var channels: [UInt16]
        var sent: UInt64
        var received: UInt64
        var delivered: UInt64
        var keepalivesSent: UInt64
        var forged: UInt64
        var replayed: UInt64
        var truncated: UInt64
        var stray: UInt64
        var malformed: UInt64
        var migrations: UInt64
        var oversize: UInt64
        var tcpWhileUp: UInt64
        var unrouted: UInt64
    }
    /// TUN mode of this mediator (docs/protocol.md §10), when the server asked for it.
    struct TunView: Encodable {
        var device: String
        var status: String
        var address: String?
        var prefixes: [String]
        var mtu: Int?
        var toLAN: UInt64
        var fromLAN: UInt64
        var dropped: [String: UInt64]
        var strayPackets: UInt64
        /// ICMP "fragmentation needed" errors the server's end sent back into its device.
        var fragmentationNeeded: UInt64 = 0
        /// The second remote address (IPv6 beside IPv4), when the mediator has one.
        var secondAddress: String?
        /// The mediator's own end, as its last TUN_STATS said (docs/protocol.md §10.5).
        var mediator: PacketCounters?
        /// The server's tun device and its offloads.
        var offload: DeviceOffloadCounters?
    }
    /// CONNECTs to this mediator (ConnectAdmission): the limit in force, what is in flight and queued
    /// now, and since the session began what waited and what was refused (each refusal reset a user).
    struct ConnectsView: Encodable {
        var limit: Int
        var inFlight: Int
        var queued: Int
        var counters: ConnectAdmission.Counters
        var refusals: Int
    }
    var name: String
    var session: UInt64
    var from: String
    var connectedAt: String
    var hostname: String
    var softwareVersion: String
    var capabilities: [String]
    var interfaces: [InterfaceView]
    var defaultRoutes: [RouteView]
    var ports: Int
    /// The server's event loop the session runs on (0: the control loop; `--threads`).
    var eventLoop: Int
    var datagrams: DatagramPathView
    var tun: TunView?
    var connects: ConnectsView

    init(_ link: MediatorLink) {
        name = link.name
        session = link.info?.sessionID ?? 0
        from = link.session.remoteAddress?.display ?? ""
        connectedAt = ISO8601DateFormatter().string(from: link.connectedAt)
        let e = link.environment ?? MediatorEnvironment(hostname: "", softwareVersion: "")
        hostname = e.hostname
        softwareVersion = e.softwareVersion
        capabilities = (e.capabilities.contains(.tun) ? ["tun"] : []) + (e.capabilities.contains(.rawSockets) ? ["raw-sockets"] : [])
        interfaces = e.interfaces.map {
            InterfaceView(
                name: $0.name, index: $0.index, mac: $0.macString, mtu: $0.mtu, up: $0.isUp, addresses: $0.addresses.map(\.description))
        }
        let names = Dictionary(e.interfaces.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
        defaultRoutes = e.routes.map {
            RouteView(
                destination: $0.destination.description, gateway: $0.gateway?.description,
                interface: names[$0.interfaceIndex] ?? "#\($0.interfaceIndex)")
        }
        ports = link.ports.count
        eventLoop = link.loopIndex
        connects = ConnectsView(
            limit: link.admission.limit, inFlight: link.admission.inFlightCount, queued: link.admission.queuedCount,
            counters: link.admission.counters, refusals: link.connectRefusals)
        let path = link.datagramPath
        let c = path.counters
        datagrams = DatagramPathView(
            path: path.isUDPUp ? "udp" : "tcp", channels: path.channelIDs, sent: c.sent, received: c.received, delivered: c.delivered,
            keepalivesSent: c.keepalivesSent, forged: c.forged, replayed: c.replayed, truncated: c.truncated &+ c.tooLarge, stray: c.stray,
            malformed: c.malformed, migrations: c.migrations, oversize: c.oversize, tcpWhileUp: path.fallbackWhileUp,
            // Server-wide, the control loop's: filled in there (`AdminAPI.withUnrouted`), as views are
            // made on their sessions' loops (`--threads`).
            unrouted: 0)
        if e.capabilities.contains(.tunOffered) { capabilities.append("tun-offered") }
        if e.capabilities.contains(.tunExtensions) { capabilities.append("tun-extensions") }
        // Raw features (docs/protocol.md §4.3, §11): which ICMP socket ECHO can use, CAP_NET_ADMIN.
        if e.capabilities.contains(.icmpDatagram) { capabilities.append("icmp-datagram") }
        if e.capabilities.contains(.netAdmin) { capabilities.append("net-admin") }
        if e.capabilities.contains(.echoOffered) {
            capabilities.append(
                e.capabilities.contains(.icmpDatagram) || e.capabilities.contains(.rawSockets) ? "echo" : "echo-unavailable")
        }
        if e.capabilities.contains(.echoNames) { capabilities.append("echo-names") }
        if e.capabilities.contains(.pipelinedConnect) { capabilities.append("pipelined-connect") }
        if e.capabilities.contains(.deniedReports) { capabilities.append("denied-reports") }
        if let t = link.registry.tunMode?.tun(of: link) {
            let counters = t.relay?.counters ?? PacketCounters()
            tun = TunView(
                device: t.deviceName, status: t.status, address: t.ready.map { "\($0.address)" },
                prefixes: t.ready?.prefixes.map(\.description) ?? [], mtu: t.ready.map { Int($0.mtu) }, toLAN: counters.toLAN,
                fromLAN: counters.fromLAN, dropped: counters.dropped, strayPackets: link.strayPackets)
            tun?.fragmentationNeeded = counters.fragmentationNeeded
            tun?.secondAddress = t.ready?.secondAddress.map { "\($0)" }
            tun?.mediator = link.mediatorTunStats.map { PacketCounters($0) }
            tun?.offload = counters.offload
        } else if link.registry.tunMode == nil, e.capabilities.contains(.tunOffered) {
            // The mediator runs with --tun and waits for a request this server never makes: say so
            // where the operator looks, rather than show nothing.
            tun = TunView(
                device: "-", status: "not started: this server runs without --tun", address: nil, prefixes: [], mtu: nil, toLAN: 0,
                fromLAN: 0, dropped: [:], strayPackets: 0)
        }
    }
}
