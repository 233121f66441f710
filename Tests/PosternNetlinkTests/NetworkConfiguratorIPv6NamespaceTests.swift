import Foundation
import PosternWire
import XCTest

@testable import PosternNetlink

#if canImport(Glibc)
    import Glibc
#endif

/// TUN mode's IPv6 changes against a real kernel, in a throwaway namespace (root only, skipped
/// otherwise): a /128 route and a proxy NDP entry, and host-wide IPv6 forwarding, whose side effects
/// on every interface's `forwarding` and on `accept_ra` are journaled and undone exactly, also by the
/// next run after a crash.
final class NetworkConfiguratorIPv6NamespaceTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    static func sysctl(_ interface: String, _ key: String) throws -> String {
        try NetworkConfigurator.readSysctl(NetworkConfigurator.ipv6ConfPath(interface, key))
    }

    /// forwarding of all, default, pst1, pst2; accept_ra of pst1, pst2.
    static func observe() throws -> [String] {
        try ["all", "default", "pst1", "pst2"].map { try sysctl($0, "forwarding") } + ["pst1", "pst2"].map { try sysctl($0, "accept_ra") }
    }

    func makeNamespace(_ suffix: String) throws -> NetworkNamespaceFixture {
        let namespace = try NetworkNamespaceFixture.make(suffix: suffix)
        try namespace.addInterface("pst1", mac: "02:00:00:00:00:06", mtu: 1500)
        try namespace.addInterface("pst2", mac: "02:00:00:00:00:07", mtu: 1500)
        try namespace.inside(["link", "set", "pst1", "up"])
        try namespace.inside(["link", "set", "pst2", "up"])
        try namespace.inside(["-6", "addr", "add", "fd00:7::1/64", "dev", "pst1", "nodad"])
        return namespace
    }

    func testForwardingRouteAndProxyNDPAreMadeAndRestoredExactly() throws {
        let namespace = try makeNamespace("v6")
        defer { namespace.delete() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pst-v6-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stateFile = directory + "/tun-pst1.journal"
        let (before, during, after) = try namespace.run { () -> ([String], [String], [String]) in
            // pst2 forwards on its own (set after `all`, which would overwrite it), accept_ra differs.
            try NetworkConfigurator.writeSysctl(NetworkConfigurator.ipv6ConfPath("pst2", "forwarding"), "1")
            try NetworkConfigurator.writeSysctl(NetworkConfigurator.ipv6ConfPath("pst1", "accept_ra"), "1")
            try NetworkConfigurator.writeSysctl(NetworkConfigurator.ipv6ConfPath("pst2", "accept_ra"), "0")
            let before = try Self.observe()
            let c = NetworkConfigurator(stateFile: stateFile)
            try c.enableIPv6Forwarding(except: "none")
            try c.setSysctl(NetworkConfigurator.ipv6ConfPath("pst1", "proxy_ndp"), to: "1")
            try c.addRoute(interface: "pst2", destination: Prefix(parsing: "fd00:7::50/128")!)
            try c.addProxyNeighbour(interface: "pst1", address: IPAddress("fd00:7::50")!)
            let during = try Self.observe()
            XCTAssertEqual(c.undoAll(), [])
            return (before, during, try Self.observe())
        }
        XCTAssertEqual(before, ["0", "0", "0", "1", "1", "0"])
        XCTAssertEqual(during, ["1", "1", "1", "1", "2", "0"], "forwarding everywhere; accept_ra 1 became 2, 0 stayed")
        XCTAssertEqual(after, before, "every value back, pst2's own forwarding too")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stateFile))
    }

    func testTheRouteAndProxyEntryExistWhileUp() throws {
        let namespace = try makeNamespace("v6up")
        defer { namespace.delete() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pst-v6up-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let box = NetworkConfiguratorNamespaceTests.ConfiguratorBox(NetworkConfigurator(stateFile: directory + "/tun-pst1.journal"))
        try namespace.run {
            try box.configurator.addRoute(interface: "pst2", destination: Prefix(parsing: "fd00:7::50/128")!)
            try box.configurator.addProxyNeighbour(interface: "pst1", address: IPAddress("fd00:7::50")!)
        }
        XCTAssertTrue(try namespace.output(["-6", "neigh", "show", "proxy"]).contains("fd00:7::50 dev pst1"))
        XCTAssertTrue(try namespace.output(["-6", "route", "show", "dev", "pst2"]).contains("fd00:7::50"))
        try namespace.run { XCTAssertEqual(box.configurator.undoAll(), []) }
        XCTAssertFalse(try namespace.output(["-6", "neigh", "show", "proxy"]).contains("fd00:7::50"))
        XCTAssertFalse(try namespace.output(["-6", "route", "show", "dev", "pst2"]).contains("fd00:7::50"))
    }

    /// Killed with IPv6 forwarding on: the next run's `cleanLeftovers` restores every value.
    func testNextRunRestoresForwardingAfterACrash() throws {
        let namespace = try makeNamespace("v6crash")
        defer { namespace.delete() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pst-v6crash-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stateFile = directory + "/tun-pst1.journal"
        let (before, after, problems) = try namespace.run { () -> ([String], [String], [String]) in
            try NetworkConfigurator.writeSysctl(NetworkConfigurator.ipv6ConfPath("pst1", "accept_ra"), "1")
            let before = try Self.observe()
            let killed = NetworkConfigurator(stateFile: stateFile)
            try killed.enableIPv6Forwarding(except: "none")
            // (no undo: the process "died")
            let (_, problems) = NetworkConfigurator(stateFile: stateFile).cleanLeftovers()
            return (before, try Self.observe(), problems)
        }
        XCTAssertEqual(problems, [])
        XCTAssertEqual(after, before)
    }
}
