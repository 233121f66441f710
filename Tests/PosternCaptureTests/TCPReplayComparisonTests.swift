import NIOCore
import PosternCapture
import PosternPacket
import PosternPcap
import PosternWire
import XCTest

/// TCP in TUN-mode replay: both tunnel ends clamp the MSS option of SYNs (`TCPMSSClamp`), so the
/// comparison lets exactly that through — the option lowered to the MTU's clamp with a valid TCP
/// checksum — and nothing else: not another value, not a raised one, not a checksum that is wrong or
/// changed without the option, not on a segment without SYN. Checked against the real clamp.
final class TCPReplayComparisonTests: XCTestCase {
    typealias P = TestPackets
    let a4: [UInt8] = [192, 168, 77, 50]
    let b4: [UInt8] = [192, 168, 77, 10]

    /// A TCP segment with options MSS, NOP, NOP, SACK permitted, its checksum right over `src`/`dst`.
    static func segment(_ src: [UInt8], _ dst: [UInt8], mss: Int, flags: UInt8 = 0x02, payload: [UInt8] = []) -> [UInt8] {
        var tcp = P.be16(40_000) + P.be16(80) + P.be32(1_000) + P.be32(0) + [0x70, flags] + P.be16(64_240) + [0, 0, 0, 0]
        tcp += [2, 4] + P.be16(mss) + [1, 1, 4, 2] + payload
        var pseudo: [UInt8] = src + dst
        if src.count == 16 {
            pseudo += P.be32(UInt32(tcp.count)) + [0, 0, 0, 6]
        } else {
            pseudo += [0, 6] + P.be16(tcp.count)
        }
        let sum = PacketSynthesizer.checksum(pseudo + tcp)
        tcp[16] = UInt8(sum >> 8)
        tcp[17] = UInt8(sum & 0xff)
        return tcp
    }

    static func ipv4(_ src: [UInt8], _ dst: [UInt8], _ tcp: [UInt8]) -> [UInt8] {
        var ip = P.ipv4(src, dst, proto: 6, tcp)
        let sum = PacketSynthesizer.checksum(Array(ip[0..<20]))
        ip[10] = UInt8(sum >> 8)
        ip[11] = UInt8(sum & 0xff)
        return ip
    }

    /// One router: TTL (IPv4, header checksum recomputed) or hop limit (IPv6) less one.
    static func routed(_ packet: [UInt8]) -> [UInt8] {
        var p = packet
        if p[0] >> 4 == 6 {
            p[7] -= 1
            return p
        }
        p[8] -= 1
        p[10] = 0
        p[11] = 0
        let sum = PacketSynthesizer.checksum(Array(p[0..<20]))
        p[10] = UInt8(sum >> 8)
        p[11] = UInt8(sum & 0xff)
        return p
    }

    /// The first offset from `from` at which the two differ.
    static func firstChanged(_ a: [UInt8], _ b: [UInt8], from: Int) -> Int? { (from..<min(a.count, b.count)).first { a[$0] != b[$0] } }

    /// What TUN mode does to an IPv4 packet at an MTU: the real clamp.
    static func clamped(_ packet: [UInt8], mtu: Int) -> [UInt8] {
        var buffer = ByteBuffer(bytes: packet)
        TCPMSSClamp.clamp(&buffer, maxMSS: TCPMSSClamp.maxMSS(forMTU: mtu))
        return Array(buffer.readableBytesView)
    }

    func testClampedSYNMatchesAndOnlyThat() {
        let sent = Self.ipv4(a4, b4, Self.segment(a4, b4, mss: 1_460))
        let received = Self.routed(Self.clamped(sent, mtu: 1_400))
        XCTAssertNotEqual(received, Self.routed(sent), "the real clamp changed the SYN")
        XCTAssertNil(PacketComparison.firstDifference(sent: sent, received: received, hops: 1, mtu: 1_400))
        let option = 20 + 22
        let checksum = 20 + 16
        // Without an MTU no clamp is allowed: the first changed byte of the checksum (either half).
        XCTAssertEqual(
            PacketComparison.firstDifference(sent: sent, received: received, hops: 1), Self.firstChanged(sent, received, from: checksum),
            "no clamp allowed without an MTU")
        XCTAssertEqual(
            PacketComparison.firstDifference(sent: sent, received: received, hops: 1, mtu: 1_300), option, "clamped to another MTU's value")
        // The checksum wrong after the clamp.
        var badSum = received
        badSum[checksum + 1] ^= 0x10
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: badSum, hops: 1, mtu: 1_400), checksum)
        // The MSS as sent but the checksum changed.
        var sameMSS = Self.routed(sent)
        sameMSS[checksum] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: sameMSS, hops: 1, mtu: 1_400), checksum)
        // A SYN whose MSS is below the clamp arrives as sent; one "clamped" upwards is refused.
        let small = Self.ipv4(a4, b4, Self.segment(a4, b4, mss: 1_200))
        XCTAssertEqual(Self.clamped(small, mtu: 1_400), small)
        XCTAssertNil(PacketComparison.firstDifference(sent: small, received: Self.routed(small), hops: 1, mtu: 1_400))
        let raised = Self.routed(Self.ipv4(a4, b4, Self.segment(a4, b4, mss: 1_360)))
        XCTAssertEqual(PacketComparison.firstDifference(sent: small, received: raised, hops: 1, mtu: 1_400), option)
        // Without SYN the same bytes are payload-like: any change is a difference.
        let ack = Self.ipv4(a4, b4, Self.segment(a4, b4, mss: 1_460, flags: 0x10))
        let ackChanged = Self.routed(Self.ipv4(a4, b4, Self.segment(a4, b4, mss: 1_360, flags: 0x10)))
        XCTAssertEqual(
            PacketComparison.firstDifference(sent: ack, received: ackChanged, hops: 1, mtu: 1_400),
            Self.firstChanged(ack, ackChanged, from: checksum))
        // Other bytes of a clamped SYN still count: the window.
        var window = received
        window[20 + 14] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: window, hops: 1, mtu: 1_400), 34)
    }

    /// A recorded SYN whose checksum was wrong (offloading on the recording host) arrives clamped with
    /// a right one, which is what the clamp's recomputation gives: accepted.
    func testRecordedBadChecksumMayArriveRightWhenClamped() {
        var sent = Self.ipv4(a4, b4, Self.segment(a4, b4, mss: 1_460))
        sent[36] = 0xde
        sent[37] = 0xad
        let received = Self.routed(Self.clamped(sent, mtu: 1_400))
        XCTAssertTrue(PacketComparison.transportChecksumIsValid(received))
        XCTAssertNil(PacketComparison.firstDifference(sent: sent, received: received, hops: 1, mtu: 1_400))
    }

    func testIPv6SYNClampIsTheMTULess60() {
        let a6 = P.a6
        let b6 = P.b6
        let sent = P.ipv6(a6, b6, proto: 6, Self.segment(a6, b6, mss: 1_440))
        func arriving(mss: Int) -> [UInt8] { Self.routed(P.ipv6(a6, b6, proto: 6, Self.segment(a6, b6, mss: mss))) }
        XCTAssertNil(PacketComparison.firstDifference(sent: sent, received: arriving(mss: 1_340), hops: 1, mtu: 1_400))
        XCTAssertNil(PacketComparison.firstDifference(sent: sent, received: arriving(mss: 1_440), hops: 1, mtu: 1_400))
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: arriving(mss: 1_360), hops: 1, mtu: 1_400), 40 + 22)
        // Behind a hop-by-hop header the TCP header is found all the same.
        let hbh = P.ipv6(a6, b6, proto: 6, Self.segment(a6, b6, mss: 1_440), hopByHop: true)
        let hbhClamped = Self.routed(P.ipv6(a6, b6, proto: 6, Self.segment(a6, b6, mss: 1_340), hopByHop: true))
        XCTAssertNil(PacketComparison.firstDifference(sent: hbh, received: hbhClamped, hops: 1, mtu: 1_400))
    }

    /// The project's own recordings, planned, "carried" by the real clamp and one router: every TCP
    /// conversation that fits the MTU matches, SYNs clamped included.
    func testPlannedTCPCapturesSurviveTheClamp() throws {
        let a = IPAddress(bytes: a4)!
        let b = IPAddress(bytes: b4)!
        var clampedSYNs = 0
        for name in ["tcp-refused.pcap", "tcp-rst.pcap", "dns-dig.pcap"] {
            let plan = PacketPlan(records: try PcapFileReader.readAll(path: P.capturesDirectory + "/" + name), mtu: 1_400, hops: 1)
            let tcp = plan.conversations.filter { $0.transport == .tcp }
            XCTAssertFalse(tcp.isEmpty, name)
            XCTAssertTrue(tcp.allSatisfy { $0.skipReason == nil }, "\(name): \(tcp.map(\.skipReason))")
            for direction in [FlowDirection.fromInitiator, .fromResponder] {
                let sent = plan.packets(from: direction, initiator: a, responder: b)
                let received = sent.map { Self.routed(Self.clamped($0.bytes, mtu: 1_400)) }
                clampedSYNs += zip(sent, received).filter { Self.routed($0.0.bytes) != $0.1 }.count
                let check = plan.check(direction: direction, sent: sent, received: received, hops: 1, capture: name)
                XCTAssertFalse(check.report.failed, "\(name) \(direction): \(check.report.text)")
                XCTAssertEqual(check.unexpected, 0)
            }
        }
        XCTAssertGreaterThan(clampedSYNs, 0, "some recorded SYN carried an MSS above the clamp")
    }
}
