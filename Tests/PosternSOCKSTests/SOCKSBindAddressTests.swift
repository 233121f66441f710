import PosternSOCKS
import PosternWire
import XCTest

/// Where BIND listens: an address the peer can reach.
final class SOCKSBindAddressTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    private var environment: MediatorEnvironment {
        MediatorEnvironment(
            hostname: "lan", softwareVersion: "test",
            interfaces: [
                .init(index: 1, name: "lo", mac: [], mtu: 65536, isUp: true, addresses: [.init(address: ip("127.0.0.1"), prefixLength: 8)]),
                .init(
                    index: 2, name: "eth0", mac: [2, 0, 0, 0, 0, 1], mtu: 1500, isUp: true,
                    addresses: [
                        .init(address: ip("192.168.77.2"), prefixLength: 24), .init(address: ip("fe80::1"), prefixLength: 64),
                        .init(address: ip("fd00:77::2"), prefixLength: 64),
                    ]),
                .init(
                    index: 3, name: "eth1", mac: [2, 0, 0, 0, 0, 2], mtu: 1500, isUp: true,
                    addresses: [.init(address: ip("10.9.0.5"), prefixLength: 16)]),
                .init(
                    index: 4, name: "eth2", mac: [2, 0, 0, 0, 0, 3], mtu: 1500, isUp: false,
                    addresses: [.init(address: ip("172.16.0.1"), prefixLength: 12)]),
            ],
            routes: [.init(destination: .init(address: .anyV4, prefixLength: 0), gateway: ip("10.9.0.1"), interfaceIndex: 3)])
    }

    func testPeerOnALinkGetsThatLinksAddress() {
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("192.168.77.10"), 0), in: environment), ip("192.168.77.2"))
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("10.9.200.1"), 0), in: environment), ip("10.9.0.5"))
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("fd00:77::10"), 0), in: environment), ip("fd00:77::2"))
    }

    func testOtherwiseTheDefaultRoutesInterface() {
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("8.8.8.8"), 0), in: environment), ip("10.9.0.5"))
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(.anyV4, 0), in: environment), ip("10.9.0.5"))
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(host: .name("ftp.lan"), port: 21), in: environment), ip("10.9.0.5"))
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("172.16.0.9"), 0), in: environment), ip("10.9.0.5"), "eth2 is down")
    }

    func testNoRouteOfTheFamilyTakesAnyUsableAddressNeverLinkLocal() {
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("2001:db8::1"), 0), in: environment), ip("fd00:77::2"))
    }

    func testWithoutEnvironmentUnspecified() {
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("192.168.77.10"), 0), in: nil), .anyV4)
        XCTAssertEqual(SOCKSBindAddress.choose(for: Endpoint(ip("fd00::1"), 0), in: nil), .anyV6)
    }
}
