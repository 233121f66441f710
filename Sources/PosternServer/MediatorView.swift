import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PosternCore
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
    }
}
