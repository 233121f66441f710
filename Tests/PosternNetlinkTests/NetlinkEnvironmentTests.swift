import Foundation
import PosternNetlink
import PosternWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Reads the namespace the tests run in; needs no privileges. Checks against what libc reports
/// through other routes (if_nameindex, if_nametoindex, gethostname) so a misparse shows up.
final class NetlinkEnvironmentTests: XCTestCase {
    func testLoopbackIsReportedWithItsAddresses() throws {
        let environment = try NetlinkEnvironment.read(softwareVersion: "test")
        let loopback = try XCTUnwrap(
            environment.interfaces.first { $0.name == "lo" }, "no lo in \(environment.interfaces.map(\.name))")
        let expectedIndex = if_nametoindex("lo")
        XCTAssertNotEqual(expectedIndex, 0, "if_nametoindex(lo) failed")
        XCTAssertEqual(loopback.index, expectedIndex)
        XCTAssertGreaterThan(loopback.mtu, 0)
        XCTAssertEqual(loopback.mac, [], "loopback reports an all-zero hardware address, which should read as none")
        XCTAssertTrue(loopback.isUp)
        XCTAssertTrue(
            loopback.addresses.contains(.init(address: IPAddress("127.0.0.1")!, prefixLength: 8)),
            "lo addresses: \(loopback.addresses)")
        let disableIPv6 = try? String(contentsOfFile: "/proc/sys/net/ipv6/conf/lo/disable_ipv6", encoding: .utf8)
        if disableIPv6?.trimmingCharacters(in: .whitespacesAndNewlines) == "0" {
            XCTAssertTrue(
                loopback.addresses.contains(.init(address: IPAddress("::1")!, prefixLength: 128)),
                "lo addresses: \(loopback.addresses)")
        }
    }

    func testInterfacesMatchIfNameIndex() throws {
        let environment = try NetlinkEnvironment.read(softwareVersion: "test")
        var expected: [String] = []
        let list = try XCTUnwrap(if_nameindex(), "if_nameindex failed: errno \(errno)")
        defer { if_freenameindex(list) }
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            expected.append("\(entry.pointee.if_index):\(String(cString: name))")
            entry += 1
        }
        XCTAssertEqual(environment.interfaces.map { "\($0.index):\($0.name)" }.sorted(), expected.sorted())
        XCTAssertEqual(
            environment.interfaces.map(\.index), environment.interfaces.map(\.index).sorted(), "sorted by index")
    }

    func testHostnameAndVersion() throws {
        let environment = try NetlinkEnvironment.read(softwareVersion: "1.2.3-test")
        var buffer = [CChar](repeating: 0, count: 256)
        XCTAssertEqual(gethostname(&buffer, 255), 0)
        let expected = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        XCTAssertFalse(expected.isEmpty)
        XCTAssertEqual(environment.hostname, expected)
        XCTAssertEqual(environment.softwareVersion, "1.2.3-test")
    }

    func testRoutesAreDefaultRoutesThroughKnownInterfaces() throws {
        let environment = try NetlinkEnvironment.read(softwareVersion: "test")
        let indexes = Set(environment.interfaces.map(\.index))
        for route in environment.routes {
            XCTAssertEqual(route.destination.prefixLength, 0, "\(route)")
            XCTAssertTrue(route.destination.address.isUnspecified, "\(route)")
            XCTAssertTrue(indexes.contains(route.interfaceIndex), "\(route) leaves through an unknown interface")
            if let gateway = route.gateway {
                XCTAssertEqual(gateway.isIPv6, route.destination.address.isIPv6, "\(route)")
            }
        }
    }

    /// Probes the capabilities independently (no CLOEXEC, plain calls) and expects the same answer.
    func testCapabilitiesMatchAnIndependentProbe() throws {
        let environment = try NetlinkEnvironment.read(softwareVersion: "test")
        let tun = open("/dev/net/tun", O_RDWR)
        if tun >= 0 { close(tun) }
        XCTAssertEqual(environment.capabilities.contains(.tun), tun >= 0)
        let raw = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_ICMP))
        if raw >= 0 { close(raw) }
        XCTAssertEqual(environment.capabilities.contains(.rawSockets), raw >= 0)
    }

    func testErrorDescriptionsNameTheCallAndErrno() {
        let error = NetlinkError.callFailed(call: "mnl_socket_bind", errno: EACCES)
        XCTAssertEqual(error.description, "netlink: mnl_socket_bind failed: Permission denied (errno 13)")
        XCTAssertTrue(
            NetlinkError.dumpInterrupted(request: "RTM_GETLINK", attempts: 3).description.contains("RTM_GETLINK"))
    }
}
