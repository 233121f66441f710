import NIOCore
import PosternPacket
import PosternWire
import XCTest

/// TUN mode's packet policy (docs/protocol.md §10): only between the remote address and the allowed
/// LAN prefixes, in both directions; everything else dropped with its reason; garbage never crashes.
final class PacketPolicyTests: XCTestCase {
    typealias Prefix = MediatorEnvironment.AddressPrefix

    let policy = PacketPolicy(
        remoteAddress: IPAddress("192.168.77.50")!,
        prefixes: [Prefix(parsing: "192.168.77.0/24")!, Prefix(parsing: "10.77.0.0/16")!], mtu: 1400)

    /// An IPv4 packet with a correct header checksum.
    static func ipv4(_ src: String, _ dst: String, payload: Int = 8, proto: UInt8 = 1) -> ByteBuffer {
        let total = 20 + payload
        var b: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0x12, 0x34, 0x40, 0, 64, proto, 0, 0]
        b += IPAddress(src)!.bytes + IPAddress(dst)!.bytes
        b += [UInt8](repeating: 0xaa, count: payload)
        var buffer = ByteBuffer(bytes: b)
        let sum = InternetChecksum.compute(buffer, at: 0, length: 20)
        buffer.setInteger(sum, at: 10)
        return buffer
    }

    func testRemoteToLAN() {
        XCTAssertNil(policy.checkToLAN(Self.ipv4("192.168.77.50", "192.168.77.10")))
        XCTAssertNil(policy.checkToLAN(Self.ipv4("192.168.77.50", "10.77.3.4")))
        // Spoofed source: the server may only send as the remote address.
        XCTAssertEqual(policy.checkToLAN(Self.ipv4("192.168.77.11", "192.168.77.10")), .source)
        XCTAssertEqual(policy.checkToLAN(Self.ipv4("203.0.113.20", "192.168.77.10")), .source)
        // Outside the allowed prefixes: the mediator's host's other networks, the internet.
        XCTAssertEqual(policy.checkToLAN(Self.ipv4("192.168.77.50", "8.8.8.8")), .destination)
        XCTAssertEqual(policy.checkToLAN(Self.ipv4("192.168.77.50", "10.78.0.1")), .destination)
    }

    func testLANToRemote() {
        XCTAssertNil(policy.checkFromLAN(Self.ipv4("192.168.77.10", "192.168.77.50")))
        XCTAssertEqual(policy.checkFromLAN(Self.ipv4("192.168.77.10", "192.168.77.51")), .destination)
        XCTAssertEqual(policy.checkFromLAN(Self.ipv4("172.16.0.1", "192.168.77.50")), .source)
    }

    func testBadPackets() {
        XCTAssertEqual(policy.checkToLAN(ByteBuffer()), .malformed)
        XCTAssertEqual(policy.checkToLAN(ByteBuffer(bytes: [0x45, 0, 0])), .malformed)
        var badSum = Self.ipv4("192.168.77.50", "192.168.77.10")
        badSum.setInteger(UInt16(0xdead), at: 10)
        XCTAssertEqual(policy.checkToLAN(badSum), .malformed)
        var v6 = ByteBuffer(bytes: [0x60, 0, 0, 0, 0, 0, 58, 64] + [UInt8](repeating: 0, count: 32))
        XCTAssertEqual(policy.checkToLAN(v6), .unsupported)
        v6.moveWriterIndex(to: 10)
        XCTAssertEqual(policy.checkToLAN(v6), .unsupported)
        XCTAssertEqual(policy.checkToLAN(Self.ipv4("192.168.77.50", "192.168.77.10", payload: 1381)), .tooLarge)
        XCTAssertNil(policy.checkToLAN(Self.ipv4("192.168.77.50", "192.168.77.10", payload: 1380)))
    }

    /// Random bytes and random mutations of a good packet: never a crash, never a pass unless the
    /// header still checks out.
    func testFuzzNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let good = Self.ipv4("192.168.77.50", "192.168.77.10", payload: 40)
        for _ in 0..<20_000 {
            var b = good
            let n = Int.random(in: 0..<4, using: &rng)
            for _ in 0..<n { b.setInteger(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0..<60, using: &rng)) }
            if Bool.random(using: &rng) { b.moveWriterIndex(to: Int.random(in: 0...60, using: &rng)) }
            if let verdict = policy.checkToLAN(b) { XCTAssertNotNil(PacketPolicy.Drop(rawValue: verdict.rawValue)) }
            let random = ByteBuffer(bytes: (0..<Int.random(in: 0..<80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            _ = policy.checkFromLAN(random)
        }
    }
}
