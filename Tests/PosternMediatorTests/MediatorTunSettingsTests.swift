import PosternWire
import XCTest

@testable import PosternMediator

/// `--tun` given once per family: IPv4 first whatever the order, each address's LAN allowed, IPv6
/// prefixes left out when the server takes no IPv6 (docs/protocol.md §10.1).
final class MediatorTunSettingsTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    func testAddressesAndPrefixes() {
        let s = MediatorTunSettings(
            addresses: [Prefix(parsing: "fd00:77::50/64")!, Prefix(parsing: "192.168.77.50/24")!],
            extraPrefixes: [Prefix(parsing: "10.77.1.2/16")!, Prefix(parsing: "fd00:78::/48")!, Prefix(parsing: "192.168.77.0/24")!],
            stateDirectory: "/tmp")
        XCTAssertEqual(s.address, Prefix(parsing: "192.168.77.50/24"))
        XCTAssertEqual(s.ipv6, Prefix(parsing: "fd00:77::50/64"))
        XCTAssertEqual(
            s.prefixes.map(\.description), ["192.168.77.0/24", "fd00:77::/64", "10.77.0.0/16", "fd00:78::/48"],
            "each LAN once, networks not hosts")
        XCTAssertEqual(s.prefixes(ipv6: false).map(\.description), ["192.168.77.0/24", "10.77.0.0/16"])
        let v6 = MediatorTunSettings(address: Prefix(parsing: "fd00:77::50/64")!, stateDirectory: "/tmp")
        XCTAssertNil(v6.ipv4)
        XCTAssertEqual(v6.prefixes(ipv6: true).map(\.description), ["fd00:77::/64"])
    }
}
