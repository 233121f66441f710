import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// The packet policy with an IPv6 remote address (docs/protocol.md §10.3, §10.6): IPv6 between the
/// remote address and the allowed IPv6 prefixes, IPv4 as before, the families kept apart; IPv6 stays
/// `unsupported` without an IPv6 remote address; garbage never crashes.
final class PacketPolicyIPv6Tests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix
    typealias P = IPv6TestPackets

    let dual = PacketPolicy(
        remoteAddresses: [IPAddress("192.168.77.50")!, IPAddress("fd00:77::50")!],
        prefixes: [Prefix(parsing: "192.168.77.0/24")!, Prefix(parsing: "fd00:77::/64")!, Prefix(parsing: "fd00:78::/48")!], mtu: 1400)

    func b(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    func testRemoteToLAN() {
        XCTAssertNil(dual.checkToLAN(b(P.echo("fd00:77::50", "fd00:77::10", size: 8))))
        XCTAssertNil(dual.checkToLAN(b(P.echo("fd00:77::50", "fd00:78:0:1::9", size: 8))))
        XCTAssertNil(dual.checkToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10")))
        // Spoofed sources: another LAN address, the user's own, the IPv4 remote address's family mixed.
        XCTAssertEqual(dual.checkToLAN(b(P.echo("fd00:77::51", "fd00:77::10", size: 8))), .source)
        XCTAssertEqual(dual.checkToLAN(b(P.echo("2001:db8:113::20", "fd00:77::10", size: 8))), .source)
        XCTAssertEqual(dual.checkToLAN(b(P.echo("::50", "fd00:77::10", size: 8))), .source)
        // Destinations outside the prefixes: the internet, link-local, multicast.
        XCTAssertEqual(dual.checkToLAN(b(P.echo("fd00:77::50", "2001:db8::1", size: 8))), .destination)
        XCTAssertEqual(dual.checkToLAN(b(P.echo("fd00:77::50", "fe80::1", size: 8))), .destination)
        XCTAssertEqual(dual.checkToLAN(b(P.echo("fd00:77::50", "ff02::1", size: 8))), .destination)
    }

    func testLANToRemote() {
        XCTAssertNil(dual.checkFromLAN(b(P.echo("fd00:77::10", "fd00:77::50", size: 8))))
        XCTAssertEqual(dual.checkFromLAN(b(P.echo("fd00:77::10", "fd00:77::51", size: 8))), .destination)
        XCTAssertEqual(dual.checkFromLAN(b(P.echo("fe80::10", "fd00:77::50", size: 8))), .source)
        XCTAssertEqual(dual.checkFromLAN(b(P.echo("2001:db8::10", "fd00:77::50", size: 8))), .source)
    }

    func testIPv6OnlyAndIPv4OnlyPolicies() {
        let v6 = PacketPolicy(remoteAddresses: [IPAddress("fd00:77::50")!], prefixes: [Prefix(parsing: "fd00:77::/64")!], mtu: 1400)
        XCTAssertNil(v6.checkToLAN(b(P.echo("fd00:77::50", "fd00:77::10", size: 8))))
        XCTAssertEqual(v6.checkToLAN(PacketPolicyTests.ipv4("192.168.77.50", "192.168.77.10")), .unsupported)
        // IPv4 only: IPv6 is unsupported even from and to addresses an IPv6 prefix would allow.
        let v4 = PacketPolicy(
            remoteAddress: IPAddress("192.168.77.50")!, prefixes: [Prefix(parsing: "192.168.77.0/24")!, Prefix(parsing: "fd00:77::/64")!],
            mtu: 1400)
        XCTAssertEqual(v4.checkToLAN(b(P.echo("fd00:77::50", "fd00:77::10", size: 8))), .unsupported)
    }

    func testBadIPv6Packets() {
        // Truncated: shorter than its payload length says, or than the fixed header.
        XCTAssertEqual(dual.checkToLAN(b(Array(P.echo("fd00:77::50", "fd00:77::10", size: 8).dropLast()))), .malformed)
        XCTAssertEqual(dual.checkToLAN(b([0x60, 0, 0, 0])), .malformed)
        // The MTU: 1,400 bytes pass, 1,401 do not.
        XCTAssertNil(dual.checkToLAN(b(P.echo("fd00:77::50", "fd00:77::10", size: 1400 - 48))))
        XCTAssertEqual(dual.checkToLAN(b(P.echo("fd00:77::50", "fd00:77::10", size: 1401 - 48))), .tooLarge)
    }

    func testFuzzNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let good = P.echo("fd00:77::50", "fd00:77::10", size: 32)
        for _ in 0..<5000 {
            var bytes = good
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng))) }
            let verdict = dual.checkToLAN(b(bytes))
            // A packet that passes is IPv6 from the remote address into an allowed prefix, whole.
            if verdict == nil, bytes.first.map({ $0 >> 4 }) == 6 {
                let p = try? IPPacket(parsing: b(bytes))
                XCTAssertEqual(p?.source, IPAddress("fd00:77::50"))
                XCTAssertTrue(dual.allows(p!.destination))
            }
            _ = dual.checkFromLAN(b(bytes))
        }
    }
}
