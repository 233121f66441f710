import PosternNetlink
import PosternWire
import XCTest

/// Builds a namespace with known interfaces, addresses and routes and checks the read returns
/// exactly those values. Root only (skipped otherwise); the namespace is deleted even on failure.
final class NetlinkNamespaceTests: XCTestCase {
    func testReadsKnownInterfaceAddressesAndDefaultRoutes() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "basic")
        defer { namespace.delete() }
        try namespace.addInterface("pst0", mac: "02:00:00:00:00:01", mtu: 1400)
        try namespace.inside(["link", "set", "pst0", "up"])
        try namespace.inside(["address", "add", "10.9.8.7/24", "dev", "pst0"])
        // nodad: skip duplicate address detection so the address is usable (not tentative) at once.
        try namespace.inside(["address", "add", "fd00:9::7/64", "dev", "pst0", "nodad"])
        try namespace.inside(["route", "add", "default", "via", "10.9.8.1", "dev", "pst0"])
        try namespace.inside(["-6", "route", "add", "default", "via", "fd00:9::1", "dev", "pst0"])

        let environment = try namespace.run { try NetlinkEnvironment.read(softwareVersion: "ns-test") }

        XCTAssertEqual(environment.interfaces.map(\.name), ["lo", "pst0"])
        let loopback = try XCTUnwrap(environment.interfaces.first { $0.name == "lo" })
        XCTAssertEqual(loopback.index, 1, "lo is always the first interface of a namespace")
        XCTAssertFalse(loopback.isUp, "lo starts down in a new namespace")
        XCTAssertEqual(loopback.addresses, [])
        XCTAssertEqual(loopback.mac, [])

        let interface = try XCTUnwrap(environment.interfaces.first { $0.name == "pst0" })
        XCTAssertEqual(interface.mac, [0x02, 0, 0, 0, 0, 0x01])
        XCTAssertEqual(interface.macString, "02:00:00:00:00:01")
        XCTAssertEqual(interface.mtu, 1400)
        XCTAssertTrue(interface.isUp)
        let v4 = interface.addresses.filter { !$0.address.isIPv6 }
        XCTAssertEqual(v4, [prefix("10.9.8.7", 24)])
        // The kernel may add a fe80:: link-local address next to ours; ours must be there.
        XCTAssertTrue(interface.addresses.contains(prefix("fd00:9::7", 64)), "\(interface.addresses)")

        XCTAssertEqual(
            Set(environment.routes),
            [
                .init(
                    destination: prefix("0.0.0.0", 0), gateway: IPAddress("10.9.8.1"), interfaceIndex: interface.index),
                .init(destination: prefix("::", 0), gateway: IPAddress("fd00:9::1"), interfaceIndex: interface.index),
            ])
        XCTAssertEqual(environment.routes.count, 2)
    }

    /// The less common shapes: a point-to-point address (IFA_LOCAL differs from IFA_ADDRESS), an
    /// ECMP default route (next hops in RTA_MULTIPATH), a directly connected IPv6 default, and
    /// defaults that must be left out (another table, an unreachable route).
    func testPeerAddressesMultipathAndFilteredDefaults() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "multi")
        defer { namespace.delete() }
        try namespace.addInterface("pst0", mac: "02:00:00:00:00:01", mtu: 1400)
        try namespace.addInterface("pst1", mac: "02:00:00:00:00:02", mtu: 1500)
        for name in ["pst0", "pst1"] { try namespace.inside(["link", "set", name, "up"]) }
        try namespace.inside(["address", "add", "10.9.8.7/24", "dev", "pst0"])
        try namespace.inside(["address", "add", "10.9.6.7/24", "dev", "pst1"])
        try namespace.inside(["address", "add", "10.9.5.7", "peer", "10.9.5.8/32", "dev", "pst1"])
        try namespace.inside([
            "route", "add", "default", "nexthop", "via", "10.9.8.1", "dev", "pst0", "nexthop", "via", "10.9.6.1", "dev",
            "pst1",
        ])
        try namespace.inside(["-6", "route", "add", "default", "dev", "pst1"])
        try namespace.inside(["-6", "route", "add", "unreachable", "default", "metric", "4000"])
        try namespace.inside(["route", "add", "default", "via", "10.9.8.2", "dev", "pst0", "table", "100"])

        let environment = try namespace.run { try NetlinkEnvironment.read(softwareVersion: "ns-test") }

        let pst0 = try XCTUnwrap(environment.interfaces.first { $0.name == "pst0" })
        let pst1 = try XCTUnwrap(environment.interfaces.first { $0.name == "pst1" })
        XCTAssertEqual(pst1.mac, [0x02, 0, 0, 0, 0, 0x02])
        XCTAssertEqual(pst1.mtu, 1500)
        XCTAssertEqual(
            Set(pst1.addresses.filter { !$0.address.isIPv6 }), [prefix("10.9.6.7", 24), prefix("10.9.5.7", 32)])

        XCTAssertEqual(
            Set(environment.routes),
            [
                .init(destination: prefix("0.0.0.0", 0), gateway: IPAddress("10.9.8.1"), interfaceIndex: pst0.index),
                .init(destination: prefix("0.0.0.0", 0), gateway: IPAddress("10.9.6.1"), interfaceIndex: pst1.index),
                .init(destination: prefix("::", 0), gateway: nil, interfaceIndex: pst1.index),
            ])
        XCTAssertEqual(environment.routes.count, 3, "\(environment.routes)")
    }

    /// Enough addresses that the RTM_GETADDR dump cannot fit one receive buffer (8 KiB at most), so
    /// the reply spans several datagrams and the read must keep going until NLMSG_DONE.
    func testMultiPartDumpIsReadToTheEnd() throws {
        let namespace = try NetworkNamespaceFixture.make(suffix: "many")
        defer { namespace.delete() }
        try namespace.addInterface("pst0", mac: "02:00:00:00:00:01", mtu: 1400)
        let count = 400
        let expected = (0..<count).map { prefix("10.9.\($0 / 200).\($0 % 200 + 1)", 16) }
        try namespace.batch(expected.map { "address add \($0) dev pst0" })

        let environment = try namespace.run { try NetlinkEnvironment.read(softwareVersion: "ns-test") }

        let interface = try XCTUnwrap(environment.interfaces.first { $0.name == "pst0" })
        XCTAssertEqual(Set(interface.addresses.filter { !$0.address.isIPv6 }), Set(expected))
        XCTAssertEqual(interface.addresses.filter { !$0.address.isIPv6 }.count, count)
    }

    private func prefix(_ address: String, _ length: UInt8) -> MediatorEnvironment.AddressPrefix {
        .init(address: IPAddress(address)!, prefixLength: length)
    }
}
