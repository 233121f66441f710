import Logging
import PosternWire
import XCTest

@testable import postern

/// `postern mediator --tun ADDRESS/PREFIX` must name a host of the LAN: not its network address and,
/// for IPv4, not its broadcast address (`--tun 192.168.77.255/24` was taken, and TUN mode came up
/// with the LAN's broadcast address as the remote side's).
final class TunAddressTests: XCTestCase {
    private func refusal(_ tun: String) -> String? {
        do {
            let command = try MediatorCommand.parse([
                "--server", "203.0.113.10:7000", "--name", "acme", "--tun", tun,
            ])
            setenv("POSTERN_SECRET", "a-secret-of-enough-length-0123456789", 1)
            defer { unsetenv("POSTERN_SECRET") }
            _ = try command.makeConfiguration(logger: Logger(label: "test"))
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testBroadcastAndNetworkAddressesAreRefused() {
        XCTAssertEqual(refusal("192.168.77.255/24"), "--tun '192.168.77.255/24' is the LAN's broadcast address, not a host address")
        XCTAssertEqual(refusal("10.0.255.255/16"), "--tun '10.0.255.255/16' is the LAN's broadcast address, not a host address")
        XCTAssertEqual(refusal("192.168.77.0/24"), "--tun '192.168.77.0/24' is the LAN's network address, not a host address")
    }

    func testHostAddressesAreTaken() {
        XCTAssertNil(refusal("192.168.77.50/24"))
        XCTAssertNil(refusal("192.168.77.254/24"))
        XCTAssertNil(refusal("10.0.255.254/16"))
        XCTAssertNil(refusal("fd00:77::ffff:ffff:ffff:ffff/64"), "IPv6 has no broadcast address")
    }

    func testBroadcastTest() throws {
        typealias Prefix = MediatorEnvironment.AddressPrefix
        XCTAssertTrue(MediatorCommand.isBroadcast(try XCTUnwrap(Prefix(parsing: "192.168.77.255/24"))))
        XCTAssertTrue(MediatorCommand.isBroadcast(try XCTUnwrap(Prefix(parsing: "192.168.77.127/25"))))
        XCTAssertTrue(MediatorCommand.isBroadcast(try XCTUnwrap(Prefix(parsing: "192.168.77.255/23"))))
        XCTAssertFalse(MediatorCommand.isBroadcast(try XCTUnwrap(Prefix(parsing: "192.168.77.255/22"))))
        XCTAssertFalse(MediatorCommand.isBroadcast(try XCTUnwrap(Prefix(parsing: "192.168.77.1/24"))))
    }
}
