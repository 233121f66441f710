import NIOCore
import PosternWire
import XCTest

/// ENVIRONMENT (docs/protocol.md §4.3).
final class EnvironmentFrameTests: XCTestCase {
    typealias Env = MediatorEnvironment

    func testEmptyEnvironmentRoundTrips() {
        assertRoundTrip(.environment(Env(hostname: "", softwareVersion: "")))
        XCTAssertEqual(payload(of: .environment(Env(hostname: "", softwareVersion: ""))), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    func testRichEnvironmentRoundTrips() {
        let env = Env(
            hostname: "gateway-box", softwareVersion: "0.1.0", capabilities: [.tun],
            interfaces: [
                .init(
                    index: 1, name: "lo", mac: [], mtu: 65536, isUp: true,
                    addresses: [
                        .init(address: ipv4("127.0.0.1"), prefixLength: 8), .init(address: ipv6("::1"), prefixLength: 128),
                    ]),
                .init(
                    index: 2, name: "eth0", mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], mtu: 1500, isUp: true,
                    addresses: [
                        .init(address: ipv4("192.168.77.2"), prefixLength: 24), .init(address: ipv6("fd00::2"), prefixLength: 64),
                        .init(address: ipv6("fe80::5054:ff:fe12:3456"), prefixLength: 64),
                    ]),
                .init(index: 3, name: "wlan0", mac: [UInt8](repeating: 0xff, count: 255), mtu: 0, isUp: false, addresses: []),
                .init(
                    index: .max, name: String(repeating: "i", count: 1000), mac: [1], mtu: .max, isUp: false,
                    addresses: [
                        .init(address: .anyV4, prefixLength: 0), .init(address: ipv4("10.0.0.1"), prefixLength: 32),
                    ]),
            ],
            routes: [
                .init(destination: .init(address: .anyV4, prefixLength: 0), gateway: ipv4("192.168.77.1"), interfaceIndex: 2),
                .init(destination: .init(address: .anyV6, prefixLength: 0), gateway: ipv6("fe80::1"), interfaceIndex: 2),
                .init(destination: .init(address: ipv4("10.8.0.0"), prefixLength: 16), gateway: nil, interfaceIndex: 4),
            ])
        assertRoundTrip(.environment(env))
        assertRoundTrip(.environment(Env(hostname: "h", softwareVersion: "v", capabilities: [.tun, .rawSockets])))
        assertRoundTrip(.environment(Env(hostname: "h", softwareVersion: "v", capabilities: .init(rawValue: .max))))
    }

    func testManyInterfacesRoundTrip() {
        var interfaces: [Env.Interface] = []
        for i in 0..<500 {
            let mac: [UInt8] = [2, 0, 0, 0, UInt8(i >> 8), UInt8(i & 0xff)]
            let address = Env.AddressPrefix(address: .v4(0x0a00_0000 | UInt32(i)), prefixLength: 24)
            interfaces.append(.init(index: UInt32(i), name: "veth\(i)", mac: mac, mtu: 1500, isUp: i % 2 == 0, addresses: [address]))
        }
        assertRoundTrip(.environment(Env(hostname: "many", softwareVersion: "0.1.0", interfaces: interfaces)))
    }

    /// §4.3: a route with no gateway is flagged 0 and carries no gateway address.
    func testRouteWithoutGatewayEncoding() {
        let env = Env(
            hostname: "", softwareVersion: "",
            routes: [.init(destination: .init(address: .anyV4, prefixLength: 0), gateway: nil, interfaceIndex: 7)])
        XCTAssertEqual(
            payload(of: .environment(env)),
            [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // hostname, version, capabilities, no interfaces
                0, 1,  // one route
                1, 0, 0, 0, 0,  // destination 0.0.0.0
                0,  // /0
                0,  // no gateway, and no gateway address
                0, 0, 0, 7,  // interface index 7
            ])
    }

    func testMacString() {
        XCTAssertEqual(GoldenVectors.environment.interfaces[0].macString, "52:54:00:12:34:56")
        XCTAssertEqual(Env.Interface(index: 1, name: "lo", mac: [], mtu: 1, isUp: true, addresses: []).macString, "")
    }

    // MARK: - Malformed

    /// hostname "", version "", capabilities 0, then the given tail.
    func environment(_ tail: [UInt8]) -> [UInt8] { rawFrame(type: 0x06, payload: [0, 0, 0, 0, 0, 0, 0, 0] + tail) }

    /// Index 2, name "e", no MAC, MTU 1500; the up flag and addresses follow.
    let interfaceHead: [UInt8] = [0, 0, 0, 2, 0, 1, 0x65, 0, 0, 0, 5, 0xdc]

    func testPrefixLengthBounds() {
        // One interface, up, one address.
        func withAddress(_ address: [UInt8], _ prefix: UInt8) -> [UInt8] {
            environment([0, 1] + interfaceHead + [1, 0, 1] + address + [prefix] + [0, 0])  // no routes
        }
        let v4: [UInt8] = [1, 10, 0, 0, 1]
        let v6: [UInt8] = [4] + [UInt8](repeating: 0, count: 15) + [1]
        XCTAssertNoThrow(try decodeOne(withAddress(v4, 32)))
        XCTAssertNoThrow(try decodeOne(withAddress(v6, 128)))
        assertDecodeThrows(withAddress(v4, 33), .invalidValue(field: "prefix length", value: "33"))
        assertDecodeThrows(withAddress(v6, 129), .invalidValue(field: "prefix length", value: "129"))
        assertDecodeThrows(withAddress(v4, 255), .invalidValue(field: "prefix length", value: "255"))
        // Route destinations are checked the same way.
        assertDecodeThrows(environment([0, 0, 0, 1, 1, 0, 0, 0, 0, 33, 0, 0, 0, 0, 1]), .invalidValue(field: "prefix length", value: "33"))
    }

    func testBadFlags() {
        assertDecodeThrows(environment([0, 1] + interfaceHead + [2, 0, 0, 0, 0]), .invalidValue(field: "interface up", value: "2"))
        assertDecodeThrows(
            environment([0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 2, 1, 1, 1, 1, 1, 0, 0, 0, 1]), .invalidValue(field: "has gateway", value: "2"))
    }

    func testAddressesMustBeIPs() {
        let name: [UInt8] = [3, 1, 0x61]
        assertDecodeThrows(
            environment([0, 1] + interfaceHead + [1, 0, 1] + name + [8, 0, 0]),
            .invalidValue(field: "address type", value: "name not allowed here"))
        assertDecodeThrows(
            environment([0, 1] + interfaceHead + [1, 0, 1, 2, 0, 0, 0, 0, 8, 0, 0]), .invalidValue(field: "address type", value: "2"))
        assertDecodeThrows(
            environment([0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1] + name + [0, 0, 0, 1]),
            .invalidValue(field: "address type", value: "name not allowed here"))
    }

    func testCountsBeyondThePayloadAreTruncated() {
        // Says two interfaces, carries one.
        assertDecodeThrows(environment([0, 2] + interfaceHead + [1, 0, 0, 0, 0]), .truncated(frame: "ENVIRONMENT"))
        // Says 65535 addresses, carries none.
        assertDecodeThrows(environment([0, 1] + interfaceHead + [1, 0xff, 0xff]), .truncated(frame: "ENVIRONMENT"))
        // MAC length beyond the payload.
        assertDecodeThrows(environment([0, 1, 0, 0, 0, 2, 0, 1, 0x65, 200, 1, 2, 3]), .truncated(frame: "ENVIRONMENT"))
        // Route count without routes; missing route count altogether.
        assertDecodeThrows(environment([0, 0, 0, 3]), .truncated(frame: "ENVIRONMENT"))
        assertDecodeThrows(environment([0, 0]), .truncated(frame: "ENVIRONMENT"))
        assertDecodeThrows(rawFrame(type: 0x06, payload: [0, 9, 0x61]), .truncated(frame: "ENVIRONMENT"))
    }

    func testTrailingBytesAfterRoutes() {
        assertDecodeThrows(environment([0, 0, 0, 0, 0xaa]), .trailingBytes(frame: "ENVIRONMENT", count: 1))
    }
}
