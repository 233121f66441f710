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
}
