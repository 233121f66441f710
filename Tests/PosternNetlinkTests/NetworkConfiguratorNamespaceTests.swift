import Foundation
import PosternWire
import XCTest

@testable import PosternNetlink

#if canImport(Glibc)
    import Glibc
#endif

/// NetworkConfigurator against a real kernel, in a throwaway namespace (root only, skipped
/// otherwise): each change is made, acknowledged and journaled; a refused one is reported in words
/// and not journaled; `undoAll` and a later run's `cleanLeftovers` put everything back.
final class NetworkConfiguratorNamespaceTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    struct Observed: Sendable, Equatable {
        var mtu: UInt32
        var up: Bool
        var addresses: [String]
        var hasLANRoute: Bool
        var forwarding: String
    }

    /// What the namespace holds now (run inside it; proxy entries: `proxy(in:)`).
    static func observe() throws -> Observed {
        let environment = try NetlinkEnvironment.read(softwareVersion: "t")
        let link = try XCTUnwrap(environment.interfaces.first { $0.name == "pst1" })
        // /proc/thread-self: this thread joined the namespace, the process did not.
        let routes = NetworkConfigurator.readFile("/proc/thread-self/net/route") ?? ""
        let forwarding = try NetworkConfigurator.readSysctl(NetworkConfigurator.ipv4ConfPath("pst1", "forwarding"))
        return Observed(
            mtu: link.mtu, up: link.isUp, addresses: link.addresses.filter { !$0.address.isIPv6 }.map(\.description),
            hasLANRoute: routes.contains("0001070A"), forwarding: forwarding)
    }

    /// Whether the namespace holds the proxy entry for 10.7.0.9 (read with iproute2, independently).
    static func proxy(in namespace: NetworkNamespaceFixture) throws -> Bool {
        try namespace.output(["neigh", "show", "proxy"]).contains("10.7.0.9 dev pst1")
    }

    func testChangesAreMadeJournaledAndUndone() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "config")
        defer { namespace.delete() }
        try namespace.addInterface("pst1", mac: "02:00:00:00:00:02", mtu: 1500)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pst-config-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stateFile = directory + "/tun-pst1.journal"

        let configurator = NetworkConfigurator(stateFile: stateFile)
        let box = ConfiguratorBox(configurator)
        let (before, during, journal, refusal) = try namespace.run { () -> (Observed, Observed, String, String) in
            let before = try Self.observe()
            let c = box.configurator
            try c.setLinkUp(name: "pst1", mtu: 1400)
            try c.addAddress(interface: "pst1", prefix: Prefix(parsing: "10.7.0.1/32")!)
            try c.addRoute(interface: "pst1", destination: Prefix(parsing: "10.7.1.0/24")!)
            try c.addProxyNeighbour(interface: "pst1", address: IPAddress("10.7.0.9")!)
            try c.setSysctl(NetworkConfigurator.ipv4ConfPath("pst1", "forwarding"), to: "1")
            var refusal = ""
            do {
                try c.addAddress(interface: "pst1", prefix: Prefix(parsing: "10.7.0.1/32")!)
            } catch {
                refusal = "\(error)"
            }
            return (before, try Self.observe(), NetworkConfigurator.readFile(stateFile) ?? "", refusal)
        }
        XCTAssertTrue(try Self.proxy(in: namespace))
        let after = try namespace.run { () -> Observed in
            XCTAssertEqual(box.configurator.undoAll(), [])
            return try Self.observe()
        }
        XCTAssertFalse(try Self.proxy(in: namespace))
        XCTAssertEqual(
            during,
            Observed(mtu: 1400, up: true, addresses: ["10.7.0.1/32"], hasLANRoute: true, forwarding: "1"))
        XCTAssertEqual(
            journal,
            """
            address pst1 10.7.0.1/32
            route pst1 10.7.1.0/24
            proxy pst1 10.7.0.9
            sysctl /proc/sys/net/ipv4/conf/pst1/forwarding 0

            """, "the refused duplicate is not journaled (undoing it would remove the first)")
        XCTAssertEqual(refusal, "cannot add address 10.7.0.1/32 to pst1: it is already there (in use by someone else?) (errno 17)")
        XCTAssertEqual(after.addresses, [])
        XCTAssertFalse(after.hasLANRoute)
        XCTAssertEqual(after.forwarding, before.forwarding)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stateFile), "the state file goes with the last change")
    }

    /// Someone else's proxy entry for the address: refused in words (the kernel itself would accept a
    /// second add silently) and left alone by the undo.
    func testSomeoneElsesProxyEntryIsRefusedAndKept() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "proxy")
        defer { namespace.delete() }
        try namespace.addInterface("pst1", mac: "02:00:00:00:00:04", mtu: 1500)
        try namespace.inside(["neigh", "add", "proxy", "10.7.0.9", "dev", "pst1"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pst-proxy-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stateFile = directory + "/tun-pst1.journal"
        let refusal = try namespace.run { () -> String in
            let c = NetworkConfigurator(stateFile: stateFile)
            defer { c.undoAll() }
            do {
                try c.addProxyNeighbour(interface: "pst1", address: IPAddress("10.7.0.9")!)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(
            refusal, "cannot add a proxy neighbour entry for 10.7.0.9 on pst1: it is already there (in use by someone else?) (errno 17)")
        XCTAssertTrue(try Self.proxy(in: namespace), "the other entry is still there")
    }

    /// A run that never undid (killed): the next run's `cleanLeftovers` finds its journal and undoes it.
    func testNextRunCleansLeftoversOfAKilledRun() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "leftovers")
        defer { namespace.delete() }
        try namespace.addInterface("pst1", mac: "02:00:00:00:00:03", mtu: 1500)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pst-leftovers-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stateFile = directory + "/tun-pst1.journal"

        let (found, problems, after) = try namespace.run { () -> (Int, [String], Observed) in
            let killed = NetworkConfigurator(stateFile: stateFile)
            try killed.addAddress(interface: "pst1", prefix: Prefix(parsing: "10.7.0.1/32")!)
            try killed.addProxyNeighbour(interface: "pst1", address: IPAddress("10.7.0.9")!)
            try killed.setSysctl(NetworkConfigurator.ipv4ConfPath("pst1", "forwarding"), to: "1")
            // (no undo: the process "died")
            let next = NetworkConfigurator(stateFile: stateFile)
            let (found, problems) = next.cleanLeftovers()
            return (found.count, problems, try Self.observe())
        }
        XCTAssertEqual(found, 3)
        XCTAssertEqual(problems, [])
        XCTAssertEqual(after.addresses, [])
        XCTAssertFalse(try Self.proxy(in: namespace))
        XCTAssertEqual(after.forwarding, "0")
    }

    /// Carries the configurator into the namespace's threads (one at a time).
    final class ConfiguratorBox: @unchecked Sendable {
        let configurator: NetworkConfigurator
        init(_ c: NetworkConfigurator) { configurator = c }
    }
}
