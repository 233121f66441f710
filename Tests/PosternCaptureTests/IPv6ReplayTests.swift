import PosternCapture
import PosternPcap
import PosternWire
import XCTest

/// Replay in TUN mode over IPv6, the pure parts: rewriting keeps the TCP, UDP and ICMPv6 checksums
/// right over the IPv6 pseudo header (checked against packets built with the new addresses), behind
/// extension headers too; ICMPv6 errors' quotes follow the map; later fragments keep their data; the
/// comparison wants the hop limit lowered by the hop count and every other byte as sent; the plan
/// replays one IP version, the one of the lab's addresses, and says why it skips the other.
final class IPv6ReplayTests: XCTestCase {
    typealias P = TestPackets
    let newA = IPAddress("fd00:77::50")!
    let newB = IPAddress("fd00:77::10")!
    var map: [[UInt8]: [UInt8]] { [P.a6: newA.bytes, P.b6: newB.bytes] }

    func endpoint(_ a: [UInt8], _ port: UInt16) -> Endpoint { Endpoint(IPAddress(bytes: a)!, port) }

    /// The checksum field at `at` of `packet` set right over `body` (from `start`) and the pseudo header.
    static func withChecksum(_ packet: [UInt8], start: Int, at: Int, proto: UInt8) -> [UInt8] {
        var p = packet
        p[at] = 0
        p[at + 1] = 0
        let body = Array(p[start...])
        let pseudo = Array(p[8..<40]) + P.be32(UInt32(body.count)) + [0, 0, 0, proto]
        let sum = PacketSynthesizer.checksum(pseudo + body)
        p[at] = UInt8(sum >> 8)
        p[at + 1] = UInt8(sum & 0xff)
        return p
    }

    func testUDPAndTCPRewrittenAsIfBuiltWithTheNewAddresses() throws {
        for payload in [[UInt8](), [1], Array("odd".utf8), [UInt8](repeating: 0xee, count: 1_001)] {
            let old = PacketSynthesizer(client: endpoint(P.a6, 40_000), server: endpoint(P.b6, 53))!
            let new = PacketSynthesizer(client: Endpoint(newA, 40_000), server: Endpoint(newB, 53))!
            for direction in [FlowDirection.fromInitiator, .fromResponder] {
                let rewritten = try XCTUnwrap(PacketRewriter.rewrite(old.datagram(from: direction, payload), map: map))
                XCTAssertEqual(rewritten, new.datagram(from: direction, payload), "UDP \(payload.count) bytes \(direction)")
                XCTAssertTrue(PacketComparison.transportChecksumIsValid(rewritten))
            }
            var oldTCP = PacketSynthesizer(client: endpoint(P.a6, 40_000), server: endpoint(P.b6, 80))!
            var newTCP = PacketSynthesizer(client: Endpoint(newA, 40_000), server: Endpoint(newB, 80))!
            let before = oldTCP.open() + oldTCP.data(from: .fromResponder, payload)
            let after = newTCP.open() + newTCP.data(from: .fromResponder, payload)
            XCTAssertEqual(before.map { PacketRewriter.rewrite($0, map: map)! }, after, "TCP \(payload.count) bytes")
        }
    }

    func testBehindAHopByHopHeaderAndForICMPv6Echo() throws {
        // UDP behind a hop-by-hop header (8 bytes): the checksum sits at 40 + 8 + 6.
        let udp = Self.withChecksum(
            P.ipv6(P.a6, P.b6, proto: 17, P.udp(5_000, 53, [1, 2, 3]), hopByHop: true), start: 48, at: 54, proto: 17)
        let out = try XCTUnwrap(PacketRewriter.rewrite(udp, map: map))
        XCTAssertEqual(Array(out[8..<40]), newA.bytes + newB.bytes)
        XCTAssertEqual(Array(out[40..<48]), Array(udp[40..<48]), "the extension header as recorded")
        XCTAssertTrue(PacketComparison.transportChecksumIsValid(out))
        // An echo request: ICMPv6's checksum covers the pseudo header, unlike ICMP's.
        let echo = Self.withChecksum(
            P.ipv6(P.a6, P.b6, proto: 58, [128, 0, 0, 0, 0, 7, 0, 1] + Array("ping".utf8)), start: 40, at: 42, proto: 58)
        XCTAssertTrue(PacketComparison.transportChecksumIsValid(echo))
        let rewritten = try XCTUnwrap(PacketRewriter.rewrite(echo, map: map))
        XCTAssertTrue(PacketComparison.transportChecksumIsValid(rewritten))
        XCTAssertEqual(
            rewritten, Self.withChecksum(P.ipv6(newA.bytes, newB.bytes, proto: 58, Array(echo[40...])), start: 40, at: 42, proto: 58))
    }

    /// A port unreachable from B about A's UDP datagram, as if built with the lab's addresses: the
    /// quote's addresses and UDP checksum, and the ICMPv6 checksum.
    func testICMPv6ErrorQuoteRewrittenConsistently() throws {
        func error(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
            let quoted = PacketSynthesizer(client: endpoint(a, 40_000), server: endpoint(b, 53))!
                .datagram(from: .fromInitiator, Array("query".utf8))
            return Self.withChecksum(P.ipv6(b, a, proto: 58, [1, 4, 0, 0, 0, 0, 0, 0] + quoted), start: 40, at: 42, proto: 58)
        }
        let recorded = error(P.a6, P.b6)
        let rewritten = try XCTUnwrap(PacketRewriter.rewrite(recorded, map: map))
        XCTAssertEqual(rewritten, error(newA.bytes, newB.bytes))
        XCTAssertTrue(PacketComparison.transportChecksumIsValid(rewritten))
        // The quote cut anywhere: no crash, the outer addresses mapped, the length kept.
        for cut in 40..<recorded.count {
            var short = Array(recorded[0..<cut])
            short[4] = UInt8((cut - 40) >> 8)
            short[5] = UInt8((cut - 40) & 0xff)
            let out = try XCTUnwrap(PacketRewriter.rewrite(short, map: map), "cut at \(cut)")
            XCTAssertEqual(Array(out[8..<40]), newB.bytes + newA.bytes)
            XCTAssertEqual(out.count, cut)
        }
    }

    func testLaterFragmentKeepsItsDataAndGarbageIsRefused() throws {
        let data = [UInt8](repeating: 0xab, count: 64)
        let later = P.ipv6(P.a6, P.b6, proto: 17, data, fragment: (99, 1_232, false))
        let out = try XCTUnwrap(PacketRewriter.rewrite(later, map: map))
        XCTAssertEqual(Array(out[40...]), Array(later[40...]), "fragment header and data as recorded")
        XCTAssertEqual(Array(out[8..<40]), newA.bytes + newB.bytes)
        XCTAssertNil(PacketRewriter.rewrite([0x60], map: map))
        XCTAssertNil(PacketRewriter.rewrite([0x60] + [UInt8](repeating: 0, count: 38), map: map), "39 bytes")
        // An extension header running past the end.
        XCTAssertNil(PacketRewriter.rewrite([0x60, 0, 0, 0, 0, 8, 0, 64] + P.a6 + P.b6 + [17, 9, 0, 0], map: map))
        var generator = SystemRandomNumberGenerator()
        for length in [40, 41, 48, 60, 200] {
            for _ in 0..<50 {
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                bytes[0] = 0x60 | (bytes[0] & 0x0f)
                _ = PacketRewriter.rewrite(bytes, map: map)
                _ = PacketComparison.firstDifference(sent: bytes, received: bytes.reversed(), hops: 1, mtu: 1_400)
            }
        }
    }

    func testComparisonWantsTheHopLimitLoweredAndNothingElse() {
        let sent = PacketSynthesizer(client: Endpoint(newA, 1), server: Endpoint(newB, 2))!.datagram(from: .fromInitiator, [1, 2, 3, 4])
        var routed = sent
        routed[7] -= 1
        XCTAssertNil(PacketComparison.firstDifference(sent: sent, received: routed, hops: 1))
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: sent, hops: 1), 7, "hop limit not lowered")
        XCTAssertNil(PacketComparison.firstDifference(sent: sent, received: sent, hops: 0))
        var flowLabel = routed
        flowLabel[3] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: flowLabel, hops: 1), 3, "the flow label must survive")
        // Bytes 10 and 11 are address bytes in IPv6, not a header checksum to skip.
        var address = routed
        address[10] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: address, hops: 1), 10)
        var payload = routed
        payload[payload.count - 1] ^= 1
        XCTAssertEqual(PacketComparison.firstDifference(sent: sent, received: payload, hops: 1), payload.count - 1)
    }

    /// ping-any.pcap holds an IPv4 and an IPv6 ping: with IPv6 lab addresses the IPv6 one is planned
    /// (neighbour discovery left out) and the IPv4 one skipped with the reason, and the other way round.
    func testPlanReplaysTheVersionOfTheLabsAddresses() throws {
        let records = try PcapFileReader.readAll(path: P.capturesDirectory + "/ping-any.pcap")
        let v4 = PacketPlan(records: records, mtu: 1_400, hops: 1)
        XCTAssertNil(v4.conversations[0].skipReason)
        XCTAssertTrue(
            v4.conversations.dropFirst().allSatisfy { $0.skipReason?.hasPrefix("IPv6: the lab's addresses (--rewrite) are IPv4") == true },
            "\(v4.conversations.map(\.skipReason))")
        let v6 = PacketPlan(records: records, mtu: 1_400, hops: 1, version: 6)
        XCTAssertEqual(v6.conversations[0].skipReason, "IPv4: the lab's addresses (--rewrite) are IPv6; give IPv4 ones to replay it")
        let planned = v6.conversations.filter { $0.skipReason == nil }
        XCTAssertFalse(planned.isEmpty)
        XCTAssertTrue(planned.allSatisfy { $0.transport == .icmp })
        let requests = v6.packets(from: .fromInitiator, initiator: newA, responder: newB)
        let replies = v6.packets(from: .fromResponder, initiator: newA, responder: newB)
        XCTAssertEqual(requests.count, 3, "three echo requests")
        XCTAssertEqual(replies.count, 3, "three echo replies")
        for packet in requests + replies {
            XCTAssertEqual(packet.bytes[0] >> 4, 6)
            XCTAssertTrue(PacketComparison.transportChecksumIsValid(packet.bytes), "ICMPv6 checksum right after the rewrite")
        }
        // Through one router they all match; a hop count of 2 fails at the hop limit's byte.
        let routed = requests.map { p -> [UInt8] in
            var b = p.bytes
            b[7] -= 1
            return b
        }
        XCTAssertFalse(v6.check(direction: .fromInitiator, sent: requests, received: routed, hops: 1, capture: "p").report.failed)
        let wrong = v6.check(direction: .fromInitiator, sent: requests, received: routed, hops: 2, capture: "p")
        XCTAssertTrue(wrong.report.failed)
        XCTAssertEqual(wrong.report.flows.first { $0.status == .mismatch }?.directions.first?.firstDifference, 7)
    }
}
