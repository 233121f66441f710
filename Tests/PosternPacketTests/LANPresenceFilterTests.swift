import PosternPacket
import PosternWire
import XCTest

/// The LAN presence's BPF program, run by a small classic-BPF interpreter (the subset of the kernel's
/// semantics the program can use: loads past the frame's end reject it, as in the kernel) against
/// frames captured in the lab and made from them.
final class LANPresenceFilterTests: XCTestCase {
    /// Runs `program` on `frame` as the kernel's sk_run_filter would: the returned length (0: drop).
    /// `packetType` is what the kernel's ancillary load SKF_AD_PKTTYPE reads (0 PACKET_HOST, 4 outgoing).
    static func run(_ program: [LANPresenceFilter.Instruction], _ frame: [UInt8], packetType: UInt32 = 0) -> UInt32 {
        var a: UInt32 = 0
        var pc = 0
        while pc < program.count {
            let i = program[pc]
            pc += 1
            switch i.code {
            case LANPresenceFilter.loadWord where i.k == LANPresenceFilter.packetTypeOffset:
                a = packetType
            case LANPresenceFilter.loadWord:
                guard i.k < 0x8000_0000 else {
                    XCTFail("ancillary load 0x\(String(i.k, radix: 16)) is not in the interpreter")
                    return 0
                }
                let o = Int(i.k)
                guard o + 4 <= frame.count else { return 0 }
                a = UInt32(frame[o]) << 24 | UInt32(frame[o + 1]) << 16 | UInt32(frame[o + 2]) << 8 | UInt32(frame[o + 3])
            case LANPresenceFilter.loadHalf:
                let o = Int(i.k)
                guard o + 2 <= frame.count else { return 0 }
                a = UInt32(frame[o]) << 8 | UInt32(frame[o + 1])
            case LANPresenceFilter.loadByte:
                let o = Int(i.k)
                guard o < frame.count else { return 0 }
                a = UInt32(frame[o])
            case LANPresenceFilter.jumpIfEqual:
                pc += Int(a == i.k ? i.jt : i.jf)
                guard pc < program.count else {
                    XCTFail("a jump past the program's end")
                    return 0
                }
            case LANPresenceFilter.returnConstant:
                return i.k
            default:
                XCTFail("opcode 0x\(String(i.code, radix: 16)) is not in the interpreter")
                return 0
            }
        }
        XCTFail("the program ran off its end")
        return 0
    }

    func run(_ program: [LANPresenceFilter.Instruction], _ frame: [UInt8], packetType: UInt32 = 0) -> UInt32 {
        Self.run(program, frame, packetType: packetType)
    }

    let arpRequest = ICMPMessageTests.hex(
        "ffff ffff ffff 824f 01d9 67fc 0806 0001 0800 0604 0001 824f 01d9 67fc c0a8 4d02 0000 0000 0000 c0a8 4d0a")
    /// The echo request of ICMPMessageTests (192.168.77.2 -> 192.168.77.10) in an Ethernet frame.
    var echoFrame: [UInt8] {
        ICMPMessageTests.hex("9eff 038c 6dc5 824f 01d9 67fc 0800")
            + ICMPMessageTests.hex("4500 0024 d176 4000 4001 4e05 c0a8 4d02 c0a8 4d0a 0800 b3e2 380c 0001 0001 0203 0405 0607")
    }

    func testAcceptsARPForAndIPv4ToTheAddressOnly() throws {
        let lanhost = try XCTUnwrap(LANPresenceFilter(address: IPAddress("192.168.77.10")!)).instructions
        let other = try XCTUnwrap(LANPresenceFilter(address: IPAddress("192.168.77.50")!)).instructions
        XCTAssertEqual(run(lanhost, arpRequest), LANPresenceFilter.acceptLength)
        XCTAssertEqual(run(other, arpRequest), 0, "ARP for another address")
        XCTAssertEqual(run(lanhost, echoFrame), LANPresenceFilter.acceptLength)
        XCTAssertEqual(run(other, echoFrame), 0, "IPv4 to another address")
        // The reply from lanhost (target 192.168.77.2) is not for 192.168.77.10.
        let arpReply = ICMPMessageTests.hex(
            "824f 01d9 67fc 9eff 038c 6dc5 0806 0001 0800 0604 0002 9eff 038c 6dc5 c0a8 4d0a 824f 01d9 67fc c0a8 4d02")
        XCTAssertEqual(run(lanhost, arpReply), 0)
        // IPv6 (ethertype 0x86dd) with the address's bytes where IPv4's destination would be: dropped.
        var ipv6 = echoFrame
        ipv6[12] = 0x86
        ipv6[13] = 0xdd
        XCTAssertEqual(run(lanhost, ipv6), 0)
        // Truncated frames never reach a load past their end.
        for n in 0..<echoFrame.count - 8 {
            XCTAssertEqual(run(lanhost, Array(echoFrame.prefix(n))), n >= 34 ? LANPresenceFilter.acceptLength : 0)
        }
        XCTAssertNil(LANPresenceFilter(address: IPAddress("fd00::50")!))
    }

    func testDropsWhatThisHostSendsItself() throws {
        let lanhost = try XCTUnwrap(LANPresenceFilter(address: IPAddress("192.168.77.10")!)).instructions
        // The host's own ARP request for the address, and its own packets to it, leave as PACKET_OUTGOING.
        XCTAssertEqual(run(lanhost, arpRequest, packetType: LANPresenceFilter.outgoing), 0)
        XCTAssertEqual(run(lanhost, echoFrame, packetType: LANPresenceFilter.outgoing), 0)
        // Broadcast (1), multicast (2) and another host's (3, promiscuous) frames are looked at.
        for type: UInt32 in [1, 2, 3] {
            XCTAssertEqual(run(lanhost, arpRequest, packetType: type), LANPresenceFilter.acceptLength)
        }
    }

    // MARK: - IPv6 (init(addresses:))

    func testIPv6ProgramAcceptsPacketsToAndSolicitationsForTheAddressOnly() throws {
        let router = IPAddress("fd00:77::1")!
        let lanhost = IPAddress("fd00:77::10")!
        let program = try XCTUnwrap(LANPresenceFilter(addresses: [router])).instructions
        let both = try XCTUnwrap(LANPresenceFilter(addresses: [IPAddress("192.168.77.10")!, router])).instructions
        let ns = NeighbourDiscoveryTests.solicitation  // lanhost asking for fd00:77::1, captured
        let na = NeighbourDiscoveryTests.advertisement  // fd00:77::1 answering lanhost
        for p in [program, both] {
            XCTAssertEqual(run(p, ns), LANPresenceFilter.acceptLength, "a solicitation for the address")
            XCTAssertEqual(run(p, na), 0, "to lanhost, not to the address")
        }
        // Seen from lanhost's side: the advertisement is to it, the solicitation not for it.
        let lanhostProgram = try XCTUnwrap(LANPresenceFilter(addresses: [lanhost])).instructions
        XCTAssertEqual(run(lanhostProgram, na), LANPresenceFilter.acceptLength)
        XCTAssertEqual(run(lanhostProgram, ns), 0)
        // The same solicitation sent by this host (PACKET_OUTGOING): dropped.
        XCTAssertEqual(run(program, ns, packetType: LANPresenceFilter.outgoing), 0)
        // IPv6 to the address (any protocol) passes; to a neighbouring address (differing in the
        // last word only, or the first) does not.
        let echo =
            [UInt8](repeating: 0, count: 6) + [2, 0, 0, 0, 0, 0x0a, 0x86, 0xdd]
            + IPv6TestPackets.echo("fd00:77::10", "fd00:77::1", size: 8)
        XCTAssertEqual(run(program, echo), LANPresenceFilter.acceptLength)
        XCTAssertEqual(run(both, echo), LANPresenceFilter.acceptLength)
        for (index, bit) in [(53, 0x02), (38, 0x01), (45, 0x80)] {
            var other = echo
            other[index] ^= UInt8(bit)
            XCTAssertEqual(run(program, other), 0, "destination byte \(index) changed")
        }
        // A solicitation behind a hop-by-hop header (next header 0) is not recognised (documented).
        var hopByHop = ns
        hopByHop[20] = 0
        XCTAssertEqual(run(program, hopByHop), 0)
        // An advertisement (type 136) with the address as its target, to someone else: dropped.
        var advertisementForIt = ns
        advertisementForIt[54] = 136
        XCTAssertEqual(run(program, advertisementForIt), 0)
        // IPv4 and ARP still work in the combined program, not in the IPv6-only one.
        XCTAssertEqual(run(both, arpRequest), LANPresenceFilter.acceptLength)
        XCTAssertEqual(run(both, echoFrame), LANPresenceFilter.acceptLength)
        XCTAssertEqual(run(program, arpRequest), 0)
        XCTAssertEqual(run(program, echoFrame), 0)
        // The IPv4 program of init(addresses:) behaves as init(address:) on the IPv4 samples and
        // every truncation of them.
        let v4 = try XCTUnwrap(LANPresenceFilter(addresses: [IPAddress("192.168.77.10")!])).instructions
        let old = try XCTUnwrap(LANPresenceFilter(address: IPAddress("192.168.77.10")!)).instructions
        for frame in [arpRequest, echoFrame] {
            for n in 0...frame.count {
                XCTAssertEqual(run(v4, Array(frame.prefix(n))), run(old, Array(frame.prefix(n))))
                XCTAssertEqual(run(both, Array(frame.prefix(n))), run(old, Array(frame.prefix(n))))
            }
        }
        // Truncated IPv6 frames never load past their end (the target ends at byte 78).
        for n in 0..<ns.count {
            XCTAssertEqual(run(program, Array(ns.prefix(n))), n >= 78 ? LANPresenceFilter.acceptLength : 0)
        }
        XCTAssertNil(LANPresenceFilter(addresses: []))
    }
}
